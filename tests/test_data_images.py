"""kmtl.data.images: synthetic lesions, the image-folder loader and Fashion-MNIST's idx reader."""

import gzip

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from kmtl.data.images import (
    LESION_FACTORS,
    MISSING,
    drop_masks,
    generate_lesions,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)
from kmtl.data.images.fashion_mnist import CATEGORY_GROUP


def test_lesions_are_deterministic_balanced_and_masks_exact():
    images, labels = generate_lesions(6, image_size=16, seed=3)
    again, labels_again = generate_lesions(6, image_size=16, seed=3)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels["lesion"], labels_again["lesion"])
    assert images.shape == (6, 16, 16, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels["malignant"].tolist().count(1) == 3
    assert set(np.unique(labels["lesion"])) == {0, 1}
    # Lesions are brighter than their surroundings: the mask marks where the image is bright.
    inside = images[..., 0][labels["lesion"] == 1].mean()
    outside = images[..., 0][labels["lesion"] == 0].mean()
    assert inside > outside + 0.15


def _isoperimetric_ratio(masks):
    """Boundary pixels squared over area: about 4 pi for a disc, larger for a spiky outline."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    interior = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    boundary = (masks & ~interior).sum(axis=(1, 2))
    return boundary**2 / masks.sum(axis=(1, 2))


def test_lesion_class_is_read_from_the_outline_with_overlap_not_from_brightness_or_size():
    images, labels, factors = generate_lesions(400, image_size=32, seed=5, return_factors=True)
    classes = labels["malignant"]
    assert sorted(factors) == sorted(LESION_FACTORS) and all(v.shape == (400,) for v in factors.values())
    # The latent irregularity decides the class, but the classes overlap: a perfect reader of it is not perfect.
    assert 0.85 < roc_auc_score(classes, factors["irregularity"]) < 0.97
    assert 0.6 < roc_auc_score(classes, factors["grain"]) < 0.8  # the weak second cue
    # The exact mask shows the outline, so its shape alone carries most of the class.
    assert roc_auc_score(classes, _isoperimetric_ratio(labels["lesion"])) > 0.8
    # Neither size nor brightness gives the class away (0.5 = no information; n=400 gives AUROC a std of ~0.03).
    for uninformative in (labels["lesion"].sum(axis=(1, 2)), images.mean(axis=(1, 2, 3)), factors["contrast"]):
        assert abs(roc_auc_score(classes, uninformative) - 0.5) < 0.1


def test_mask_fraction_keeps_that_many_masks():
    _, labels = generate_lesions(10, image_size=16, mask_fraction=0.3)
    missing = (labels["lesion"] == MISSING).all(axis=(1, 2))
    assert missing.sum() == 7 and not (labels["lesion"][~missing] == MISSING).any()
    with pytest.raises(ValueError, match="Received: mask_fraction=1.5"):
        drop_masks(np.zeros((2, 2, 2)), 1.5)
    with pytest.raises(ValueError, match="Received: image_size=8"):
        generate_lesions(2, image_size=8)


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(np.asarray(array, np.uint8)[..., None]).numpy())


def test_folder_loader_reads_images_masks_and_labels(tmp_path):
    image = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    _write_png(tmp_path / "images" / "a.png", image)
    _write_png(tmp_path / "images" / "b.png", 255 - image)
    mask = np.array([[0, 1, 1, 255]] * 4)  # the last column unlabelled
    _write_png(tmp_path / "masks" / "a.png", mask)  # b has no mask
    (tmp_path / "labels.csv").write_text("image,malignant,grade\na.png,1,2\nb.png,0,\n")
    images, labels = load_image_folder(tmp_path)
    assert images.shape == (2, 4, 4, 1)
    np.testing.assert_allclose(images[0, ..., 0], image / 255.0, atol=1e-7)
    np.testing.assert_array_equal(labels["mask"][0], np.where(mask == 255, MISSING, mask))
    assert (labels["mask"][1] == MISSING).all()
    assert labels["malignant"].tolist() == [1, 0] and labels["grade"].tolist() == [2, MISSING]
    resized, resized_labels = load_image_folder(tmp_path, image_size=8)
    assert resized.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(resized_labels["mask"][0, :, :2], 0)  # nearest keeps ids


def test_folder_loader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No labels file"):
        load_image_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("image,malignant\nmissing.png,1\n")
    with pytest.raises(FileNotFoundError, match="line 2: no image file .*missing.png"):
        load_image_folder(tmp_path)
    _write_png(tmp_path / "images" / "a.png", np.zeros((4, 4)))
    (tmp_path / "labels.csv").write_text("image,malignant\na.png,yes\n")
    with pytest.raises(ValueError, match="line 2, column 'malignant'.*Received: 'yes'"):
        load_image_folder(tmp_path)


def _write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def test_fashion_mnist_reads_idx_files_pads_and_derives_masks(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    images[:, 10:12, 10:12] = 200
    images[:, 0, 0] = 20  # 20/255 < 0.1: background
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", [0, 5, 8])
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz"), [0, 5, 8])
    x, labels = load_fashion_mnist("test", path=tmp_path)
    assert x.shape == (3, 32, 32, 1)
    assert labels["category"].tolist() == [0, 5, 8] and labels["group"].tolist() == [0, 2, 3]
    assert labels["mask"].sum() == 3 * 4 and labels["mask"][0, 12:14, 12:14].all()  # padded by 2
    assert CATEGORY_GROUP.shape == (10,)


def test_fashion_mnist_absent_names_the_apt_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(path=tmp_path)
