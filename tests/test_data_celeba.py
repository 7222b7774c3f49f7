import os

import numpy as np
import pytest
import tensorflow as tf

from kmtl.data import FACE_TASK_NAMES, celeba_dataset, load_celeba

# CelebA's 40 attribute names, in the order of list_attr_celeba.txt.
ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
LANDMARK_HEADER = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
)
# name: (positive attributes, (height, width), colour, landmark pixels or None, partition)
IMAGES = {
    "000001.jpg": (("Smiling", "Male", "Black_Hair", "Young"), (30, 20), (0.9, 0.1, 0.1),
                   (6, 10, 14, 10, 10, 15, 7, 22, 13, 22), 0),
    "000002.jpg": (("Eyeglasses", "Blond_Hair"), (50, 40), (0.1, 0.9, 0.1),
                   (12, 20, 28, 21, 20, 30, 14, 40, 26, 41), 0),
    "000003.jpg": (("Smiling", "Brown_Hair", "Gray_Hair"), (30, 20), (0.1, 0.1, 0.9),
                   (5, 11, 15, 11, 10, 16, 6, 23, 14, 23), 1),
    "000004.jpg": ((), (30, 20), (0.5, 0.5, 0.5), None, 2),
    "000005.jpg": (("Gray_Hair", "Male", "Eyeglasses"), (30, 20), (0.9, 0.9, 0.9),
                   (7, 9, 13, 9, 10, 14, 8, 21, 12, 21), 2),
}  # fmt: skip
EXPECTED = {  # smiling, eyeglasses, gender, hair_colour per image
    "smiling": [1, 0, 1, 0, 0],
    "eyeglasses": [0, 1, 0, 0, 1],
    "gender": [1, 0, 0, 0, 1],
    "hair_colour": [0, 1, -1, -1, 3],  # 000003 has two hair colours and 000004 none: missing
}


def write_image(path, height, width, colour):
    pixels = np.broadcast_to(np.array(colour) * 255, (height, width, 3)).astype("uint8")
    tf.io.write_file(path, tf.io.encode_jpeg(pixels, quality=100))


def write_celeba(root, images=IMAGES, partition=True):
    os.makedirs(root / "img_align_celeba")
    attr_rows, landmark_rows, partition_rows = [], [], []
    for name, (positive, (height, width), colour, landmarks, split) in images.items():
        write_image(str(root / "img_align_celeba" / name), height, width, colour)
        values = [1 if attribute in positive else -1 for attribute in ATTRIBUTES]
        attr_rows.append(name + " " + " ".join(f"{value:>2}" for value in values))
        if landmarks is not None:
            landmark_rows.append(f"{name}" + "".join(f"{value:>5}" for value in landmarks))
        partition_rows.append(f"{name} {split}")
    (root / "list_attr_celeba.txt").write_text(
        f"{len(attr_rows)}\n" + " ".join(ATTRIBUTES) + " \n" + "\n".join(attr_rows) + "\n"
    )
    (root / "list_landmarks_align_celeba.txt").write_text(
        f"{len(landmark_rows)}\n{LANDMARK_HEADER}\n" + "\n".join(landmark_rows) + "\n"
    )
    if partition:
        (root / "list_eval_partition.txt").write_text("\n".join(partition_rows) + "\n")
    return root


def replace_line(path, number, text):
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def root(tmp_path):
    return write_celeba(tmp_path)


def test_load_all_labels_and_images(root):
    images, labels = load_celeba(root, image_size=8)
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.float32
    assert set(labels) == set(FACE_TASK_NAMES)
    for name, expected in EXPECTED.items():
        assert labels[name].dtype == np.int32
        np.testing.assert_array_equal(labels[name], expected, err_msg=name)
    np.testing.assert_array_equal(labels["ethnicity"], [-1] * 5)
    assert labels["age"].shape == (5, 1) and np.isnan(labels["age"]).all()
    assert labels["head_pose"].shape == (5, 1) and np.isnan(labels["head_pose"]).all()
    for row, (_, (height, width), colour, _, _) in enumerate(IMAGES.values()):
        np.testing.assert_allclose(images[row].mean(axis=(0, 1)), colour, atol=0.03)  # JPEG round-off


def test_landmarks_divided_by_original_width_and_height(root):
    _, labels = load_celeba(root, image_size=8)
    landmarks = labels["landmarks"]
    assert landmarks.shape == (5, 10) and landmarks.dtype == np.float32
    # 000001.jpg is 20 wide and 30 high; 000002.jpg is 40 wide and 50 high.
    np.testing.assert_allclose(landmarks[0], np.array([6, 10, 14, 10, 10, 15, 7, 22, 13, 22]) / ([20, 30] * 5))
    np.testing.assert_allclose(landmarks[1], np.array([12, 20, 28, 21, 20, 30, 14, 40, 26, 41]) / ([40, 50] * 5))
    assert np.isnan(landmarks[3]).all()  # 000004.jpg has no landmarks row: missing


@pytest.mark.parametrize(
    "split, smiling, hair",
    [("train", [1, 0], [0, 1]), ("valid", [1], [-1]), ("test", [0, 0], [-1, 3])],
)
def test_split_filtering(root, split, smiling, hair):
    images, labels = load_celeba(root, split=split, image_size=8)
    assert len(images) == len(smiling)
    np.testing.assert_array_equal(labels["smiling"], smiling)
    np.testing.assert_array_equal(labels["hair_colour"], hair)


def test_limit_keeps_file_order(root):
    images, labels = load_celeba(root, image_size=8, limit=2)
    assert len(images) == 2
    np.testing.assert_array_equal(labels["eyeglasses"], [0, 1])


def test_dataset_matches_arrays(root):
    images, labels = load_celeba(root, image_size=8)
    batches = list(celeba_dataset(root, image_size=8, batch_size=2))
    assert [len(inputs["image"]) for inputs, _ in batches] == [2, 2, 1]
    np.testing.assert_allclose(np.concatenate([inputs["image"] for inputs, _ in batches]), images)
    for name in FACE_TASK_NAMES:
        got = np.concatenate([batch[name] for _, batch in batches])
        np.testing.assert_array_equal(got, labels[name], err_msg=name)


def test_dataset_shuffle_keeps_image_label_pairs(root):
    ((inputs, labels),) = list(celeba_dataset(root, image_size=8, batch_size=5, shuffle=True, seed=1))
    colours = np.array([colour for _, _, colour, _, _ in IMAGES.values()])
    means = inputs["image"].numpy().mean(axis=(1, 2))
    rows = np.abs(means[:, None, :] - colours[None]).sum(-1).argmin(-1)  # which file each image is
    assert sorted(rows) == [0, 1, 2, 3, 4]
    for name, expected in EXPECTED.items():
        np.testing.assert_array_equal(labels[name], np.array(expected)[rows], err_msg=name)


@pytest.mark.parametrize("missing", ["list_attr_celeba.txt", "list_landmarks_align_celeba.txt"])
def test_missing_label_file(root, missing):
    os.remove(root / missing)
    with pytest.raises(FileNotFoundError, match=missing):
        load_celeba(root)


def test_missing_image_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        load_celeba(tmp_path)


def test_split_without_partition_file(tmp_path):
    root = write_celeba(tmp_path, partition=False)
    assert len(load_celeba(root, image_size=8)[0]) == 5  # not needed without a split
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt"):
        load_celeba(root, split="train")


def test_listed_image_absent(root):
    os.remove(root / "img_align_celeba" / "000003.jpg")
    with pytest.raises(FileNotFoundError, match=r"000003\.jpg.*list_attr_celeba\.txt, line 5"):
        load_celeba(root)


def test_attribute_row_with_wrong_number_of_values(root):
    replace_line(root / "list_attr_celeba.txt", 4, "000002.jpg " + " ".join(["-1"] * 39))
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt, line 4: expected a file name and 40 values"):
        load_celeba(root)


def test_attribute_value_not_plus_or_minus_one(root):
    replace_line(root / "list_attr_celeba.txt", 3, "000001.jpg " + " ".join(["0"] + ["1"] * 39))
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt, line 3: attribute values must be -1 or 1"):
        load_celeba(root)


def test_landmark_row_with_wrong_number_of_values(root):
    replace_line(root / "list_landmarks_align_celeba.txt", 3, "000001.jpg 1 2 3")
    with pytest.raises(ValueError, match=r"list_landmarks_align_celeba\.txt, line 3: expected a file name and 10"):
        load_celeba(root)


def test_bad_partition_value(root):
    replace_line(root / "list_eval_partition.txt", 2, "000002.jpg 7")
    with pytest.raises(ValueError, match=r"list_eval_partition\.txt, line 2: the partition must be 0, 1 or 2"):
        load_celeba(root, split="test")


def test_count_line_mismatch_warns(root):
    replace_line(root / "list_attr_celeba.txt", 1, "6")
    with pytest.warns(UserWarning, match="line 1 gives 6 images but 5 rows follow"):
        load_celeba(root, image_size=8)


def test_undecodable_image_is_named(root):
    (root / "img_align_celeba" / "000002.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"000002\.jpg"):
        load_celeba(root, image_size=8)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"split": "validation"}, "split"), ({"image_size": 0}, "image_size"), ({"limit": 0}, "limit")],
)
def test_invalid_arguments(root, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_celeba(root, **kwargs)
