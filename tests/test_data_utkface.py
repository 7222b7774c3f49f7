import numpy as np
import pytest
import tensorflow as tf

from kmtl.data import FACE_TASK_NAMES, load_utkface, parse_utkface_name, utkface_dataset

# file name -> colour; sorted by name: 26_..., 3_..., 45_..., 80_... (61_1_... is malformed: no race field).
FILES = {
    "26_1_2_20170116174525125.jpg.chip.jpg": (0.9, 0.1, 0.1),
    "3_0_0_20170110160000000.jpg.chip.jpg": (0.1, 0.9, 0.1),
    "45_1_3_20170104.png": (0.1, 0.1, 0.9),
    "61_1_20170109142408075.jpg.chip.jpg": (0.5, 0.5, 0.5),
    "80_0_4_20170120.jpg": (0.9, 0.9, 0.9),
}
MALFORMED = "61_1_20170109142408075.jpg.chip.jpg"


def write_image(path, colour, height=12, width=10):
    pixels = np.broadcast_to(np.array(colour) * 255, (height, width, 3)).astype("uint8")
    encode = tf.io.encode_png if path.endswith(".png") else tf.io.encode_jpeg
    tf.io.write_file(path, encode(pixels))


@pytest.fixture
def root(tmp_path):
    for name, colour in FILES.items():
        write_image(str(tmp_path / name), colour)
    (tmp_path / "README.txt").write_text("not an image, ignored")
    (tmp_path / "part2").mkdir()  # subfolders are not read
    write_image(str(tmp_path / "part2" / "30_0_1_2017.jpg"), (0, 0, 0))
    return tmp_path


def test_labels_parsed_from_names(root):
    with pytest.warns(UserWarning, match=MALFORMED):
        images, labels = load_utkface(root, image_size=8)
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.float32
    assert set(labels) == set(FACE_TASK_NAMES)
    np.testing.assert_array_equal(labels["age"], [[26.0], [3.0], [45.0], [80.0]])
    assert labels["age"].dtype == np.float32
    np.testing.assert_array_equal(labels["gender"], [0, 1, 0, 1])  # UTKFace 0 = male -> our 1
    np.testing.assert_array_equal(labels["ethnicity"], [2, 0, 3, 4])
    for name in ("smiling", "eyeglasses", "hair_colour"):
        np.testing.assert_array_equal(labels[name], [-1] * 4, err_msg=name)
    assert labels["head_pose"].shape == (4, 1) and np.isnan(labels["head_pose"]).all()
    assert labels["landmarks"].shape == (4, 10) and np.isnan(labels["landmarks"]).all()
    expected = [FILES[name] for name in sorted(FILES) if name != MALFORMED]
    np.testing.assert_allclose(images.mean(axis=(1, 2)), expected, atol=0.03)  # JPEG round-off


def test_limit_counts_well_named_images_in_sorted_order(root):
    with pytest.warns(UserWarning):
        _, labels = load_utkface(root, image_size=8, limit=2)
    np.testing.assert_array_equal(labels["age"][:, 0], [26.0, 3.0])


def test_dataset_matches_arrays(root):
    with pytest.warns(UserWarning):
        images, labels = load_utkface(root, image_size=8)
    with pytest.warns(UserWarning):
        batches = list(utkface_dataset(root, image_size=8, batch_size=3))
    assert [len(inputs["image"]) for inputs, _ in batches] == [3, 1]
    np.testing.assert_allclose(np.concatenate([inputs["image"] for inputs, _ in batches]), images)
    for name in FACE_TASK_NAMES:
        got = np.concatenate([batch[name] for _, batch in batches])
        np.testing.assert_array_equal(got, labels[name], err_msg=name)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("26_1_2_20170116174525125.jpg.chip.jpg", (26, 1, 2)),
        ("100_0_0_20170112213500903.jpg", (100, 0, 0)),
        ("61_1_20170109142408075.jpg.chip.jpg", None),  # race missing
        ("39_2_0_20170116174525125.jpg", None),  # gender out of range
        ("39_0_5_20170116174525125.jpg", None),  # race out of range
        ("39_0_a_20170116174525125.jpg", None),
        ("39_0_1_.jpg", None),
        ("._39_0_1_20170116174525125.jpg", None),
    ],
)
def test_parse_name(name, expected):
    assert parse_utkface_name(name) == expected


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_utkface(tmp_path / "nowhere")


def test_no_well_named_image(tmp_path):
    write_image(str(tmp_path / MALFORMED), (0.5, 0.5, 0.5))
    with pytest.warns(UserWarning, match=MALFORMED), pytest.raises(ValueError, match="No UTKFace image"):
        load_utkface(tmp_path)


def test_undecodable_image_is_named(tmp_path):
    write_image(str(tmp_path / "20_0_0_2017.jpg"), (0.5, 0.5, 0.5))
    (tmp_path / "21_0_0_2017.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="21_0_0_2017.jpg"):
        load_utkface(tmp_path, image_size=8)


@pytest.mark.parametrize("kwargs, match", [({"image_size": 0}, "image_size"), ({"limit": -1}, "limit")])
def test_invalid_arguments(root, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_utkface(root, **kwargs)
