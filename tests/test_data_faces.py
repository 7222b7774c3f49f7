import numpy as np
import pytest

import kmtl.data
from kmtl.data import FACE_TASK_NAMES, faces_dataset, generate_faces

SHAPES = {
    "smiling": (),
    "eyeglasses": (),
    "gender": (),
    "hair_colour": (),
    "ethnicity": (),
    "age": (1,),
    "head_pose": (1,),
    "landmarks": (10,),
}
NUM_CLASSES = {"smiling": 2, "eyeglasses": 2, "gender": 2, "hair_colour": 4, "ethnicity": 5}


@pytest.fixture(scope="module")
def clean():
    """Noise-free faces, so pixel checks test the drawing and not the noise."""
    return generate_faces(300, image_size=64, seed=3, noise=0.0)


def _luminance(images, xs, ys):
    """Mean over channels of the pixel containing each normalised point `(x, y)`."""
    size = images.shape[1]
    cols = np.clip((xs * size).astype(int), 0, size - 1)
    rows = np.clip((ys * size).astype(int), 0, size - 1)
    return images[np.arange(len(images)), rows, cols].mean(axis=-1)


def _cheek_y(lm):
    """A height on the bare cheek: 60% of the way down from the eyes to the mouth corners (below glasses frames
    and narrowed smiling eyes, above beards and the nose-to-mouth folds)."""
    return lm[:, 1] + 0.6 * (lm[:, 7] - lm[:, 1])


def test_public_names():
    # The whole of kmtl.data is pinned in test_public_api.py; these are the face names.
    assert {
        "ETHNICITIES",
        "FACE_TASK_NAMES",
        "HAIR_COLOURS",
        "LANDMARK_NAMES",
        "celeba_dataset",
        "faces_dataset",
        "generate_faces",
        "load_celeba",
        "load_utkface",
        "parse_utkface_name",
        "utkface_dataset",
    } <= set(kmtl.data.__all__)
    assert FACE_TASK_NAMES == tuple(SHAPES)
    assert kmtl.data.HAIR_COLOURS == ("black", "blond", "brown", "gray")
    assert kmtl.data.ETHNICITIES == ("white", "black", "asian", "indian", "other")
    assert len(kmtl.data.LANDMARK_NAMES) == 5


def test_shapes_dtypes_and_ranges():
    images, labels = generate_faces(40, image_size=32, seed=0)
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(labels) == set(FACE_TASK_NAMES)
    for name, shape in SHAPES.items():
        assert labels[name].shape == (40,) + shape, name
        assert labels[name].dtype == (np.int32 if name in NUM_CLASSES else np.float32), name
    for name, num_classes in NUM_CLASSES.items():
        assert labels[name].min() >= 0 and labels[name].max() < num_classes, name
    assert np.all((labels["age"] >= 18) & (labels["age"] <= 80))
    assert np.all(np.abs(labels["head_pose"]) <= 40)
    assert np.all((labels["landmarks"] > 0) & (labels["landmarks"] < 1))


def test_same_seed_same_arrays_and_other_seed_differs():
    images, labels = generate_faces(20, image_size=32, seed=7)
    again, labels_again = generate_faces(20, image_size=32, seed=7)
    other, labels_other = generate_faces(20, image_size=32, seed=8)
    np.testing.assert_array_equal(images, again)
    for name in FACE_TASK_NAMES:
        np.testing.assert_array_equal(labels[name], labels_again[name])
    assert not np.allclose(images, other)
    assert not np.allclose(labels["landmarks"], labels_other["landmarks"])


def test_more_examples_than_one_chunk_are_deterministic():
    images, _ = generate_faces(300, image_size=16, seed=1)
    np.testing.assert_array_equal(images, generate_faces(300, image_size=16, seed=1)[0])


@pytest.fixture(scope="module")
def many():
    """Enough small faces for the labels' frequencies and correlations."""
    return generate_faces(2000, image_size=16, seed=0)


def test_class_balance(many):
    _, labels = many
    for name, num_classes in NUM_CLASSES.items():
        freqs = np.bincount(labels[name], minlength=num_classes) / len(labels[name])
        assert freqs.min() >= 0.1, (name, freqs)


def test_attributes_correlate_like_real_faces(many):
    _, labels = many
    age, yaw = labels["age"][:, 0], labels["head_pose"][:, 0]
    old, gray = age > 50, labels["hair_colour"] == 3
    assert labels["age"][gray].mean() > labels["age"][~gray].mean() + 15
    assert gray[age < 35].mean() < 0.02 and gray[age > 65].mean() > 0.9
    blond, white = labels["hair_colour"] == 1, labels["ethnicity"] == 0
    assert blond[white].mean() > 0.25 and blond[~white].mean() < 0.06
    glasses = labels["eyeglasses"] == 1
    assert glasses[old].mean() > glasses[~old].mean() + 0.1
    smiling, frontal = labels["smiling"] == 1, np.abs(yaw) < 10
    assert smiling[frontal].mean() > smiling[np.abs(yaw) > 25].mean() + 0.1
    male = labels["gender"] == 1
    assert smiling[~male].mean() > smiling[male].mean() + 0.08
    # Independent factors stay independent: gender of age, pose of age, glasses of gender.
    assert abs(age[male].mean() - age[~male].mean()) < 2.0
    assert abs(np.corrcoef(age, np.abs(yaw))[0, 1]) < 0.08
    assert abs(glasses[male].mean() - glasses[~male].mean()) < 0.05
    # Most faces look at the camera: yaw concentrates near 0 (a uniform yaw has |yaw| < 10 in a quarter of faces).
    assert frontal.mean() > 0.33


def test_roll_turns_the_landmarks(many):
    _, labels = many
    lm = labels["landmarks"]
    angle = np.degrees(np.arctan2(lm[:, 3] - lm[:, 1], lm[:, 2] - lm[:, 0]))  # of the line through the eyes
    assert np.abs(angle).max() <= 12.0 + 1e-3 and np.abs(angle).max() > 9.0
    assert 3.0 < angle.std() < 6.0  # 12 * 2 * sd(Beta(2, 2)) = 5.4 degrees for the roll that turns the eyes


def test_landmarks_in_anatomical_order(clean):
    x, y = clean[1]["landmarks"][:, 0::2], clean[1]["landmarks"][:, 1::2]
    assert np.all(x[:, 0] < x[:, 1])  # left eye left of right eye
    assert np.all(x[:, 3] < x[:, 4])  # left mouth corner left of right one
    assert np.all(y[:, 0] < y[:, 2]) and np.all(y[:, 2] < y[:, 3])  # eyes above nose above mouth


def test_eyes_and_nose_are_drawn_at_their_landmarks(clean):
    images, labels = clean
    lm = labels["landmarks"]
    # Near-frontal faces, so the cheek point below the eye stays clear of the nose and the face edge.
    frontal = np.abs(labels["head_pose"][:, 0]) < 25
    assert frontal.sum() > 100
    images, lm = images[frontal], lm[frontal]
    cheek_y = _cheek_y(lm)
    for x_col, y_col in ((0, 1), (2, 3)):
        eye = _luminance(images, lm[:, x_col], lm[:, y_col])
        cheek = _luminance(images, lm[:, x_col], cheek_y)
        assert np.all(eye < cheek - 0.05)
    nose = _luminance(images, lm[:, 4], lm[:, 5])
    cheek = _luminance(images, (lm[:, 0] + lm[:, 4]) / 2, lm[:, 5])
    assert np.all(nose < cheek)


def test_glasses_bridge_between_the_eyes(clean):
    images, labels = clean
    lm = labels["landmarks"]
    middle = _luminance(images, (lm[:, 0] + lm[:, 2]) / 2, (lm[:, 1] + lm[:, 3]) / 2)
    cheek = _luminance(images, lm[:, 0], _cheek_y(lm))
    glasses = labels["eyeglasses"] == 1
    assert np.all(middle[glasses] < 0.8 * cheek[glasses])
    assert np.all(middle[~glasses] > 0.8 * cheek[~glasses])


def test_negative_yaw_moves_the_nose_left(clean):
    _, labels = clean
    yaw, lm = labels["head_pose"][:, 0], labels["landmarks"]
    # The nose's offset from the eyes' midpoint along the line through the eyes, which in-plane roll turns with
    # the face (so the offset does not depend on roll).
    eye_axis = lm[:, 2:4] - lm[:, 0:2]
    eye_axis /= np.linalg.norm(eye_axis, axis=1, keepdims=True)
    offset = np.sum((lm[:, 4:6] - (lm[:, 0:2] + lm[:, 2:4]) / 2) * eye_axis, axis=1)
    turned = np.abs(yaw) > 1
    np.testing.assert_array_equal(np.sign(offset[turned]), np.sign(yaw[turned]))
    assert np.corrcoef(yaw, offset)[0, 1] > 0.95


def test_dataset_batches_match_arrays():
    images, labels = generate_faces(10, image_size=16, seed=2)
    batches = list(faces_dataset(10, image_size=16, seed=2, batch_size=4))
    assert [len(b[0]["image"]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0]["image"] for b in batches]), images)
    for name in FACE_TASK_NAMES:
        np.testing.assert_array_equal(np.concatenate([b[1][name] for b in batches]), labels[name])


def test_dataset_shuffle_is_seeded_and_keeps_pairs():
    _, labels = generate_faces(12, image_size=16, seed=4)
    first = list(faces_dataset(12, image_size=16, seed=4, batch_size=12, shuffle=True))[0][1]
    again = list(faces_dataset(12, image_size=16, seed=4, batch_size=12, shuffle=True))[0][1]
    np.testing.assert_array_equal(first["age"], again["age"])
    order = np.argsort(first["age"].numpy()[:, 0])
    np.testing.assert_array_equal(
        first["landmarks"].numpy()[order], labels["landmarks"][np.argsort(labels["age"][:, 0])]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_examples": 0}, "num_examples"),
        ({"num_examples": 2.5}, "num_examples"),
        ({"num_examples": 2, "image_size": 8}, "image_size"),
        ({"num_examples": 2, "noise": -0.1}, "noise"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_faces(**kwargs)
