"""Deterministic synthetic faces labelled for every face task, drawn with vectorised numpy.

Each face comes from a few latent factors, correlated the way they are in photographs of real faces: who the person
is (gender, age, ethnicity), how the head sits in the picture (yaw, roll, centre, scale) and what the face shows
(expression, glasses, hair, beard, make-up). The labels are some of those factors; the others are nuisances a model
must see through. What each task depends on, and how it shows in the pixels:

- gender (1 in 2 male): jaw width; long hair (85% of women, 12% of men); beard (men, likelier with age); make-up,
  lipstick and eye shadow (women, less likely with age); receding hairline (men, with age).
- age (18 to 80, skewed young): forehead lines, crow's feet and nose-to-mouth folds, more and darker with age;
  greying hair from a personal onset age; men's hairline recedes.
- ethnicity: skin tone; hair colour (blond hair mostly on white faces).
- hair_colour, from ethnicity (base colour) and age (gray once half gray, around 45 to 60): colour of the hair cap,
  fringe, long hair and beard; partly gray hair before it counts as gray.
- smiling, likelier facing the camera and for women: wider mouth, corners higher, open on teeth; narrowed eyes.
- eyeglasses, likelier when older (and independent of the rest): dark rings around both eyes and a bridge.
- head_pose (yaw, mostly frontal): features on a cylinder turn with the head: the nose moves sideways more than the
  eyes, the side turned away is compressed.
- landmarks, from pose (yaw and in-plane roll), face position and size, gender (jaw width) and smiling (mouth
  corners): exact; the iris centres, the nose tip and the mouth corners are drawn at them.

Roll (in-plane rotation, up to 12 degrees, mostly small), face position and size, background, lighting (brightness
and a vertical gradient) and Gaussian pixel noise are nuisances; roll is not a label, but it moves the landmarks.
"""

import numpy as np
import tensorflow as tf

from kmtl.data import _common
from kmtl.data.faces import _painting

_CHUNK = 256  # images drawn per vectorised step (bounds memory to a few MB per array)

_SKIN = np.array(  # white, black, asian, indian, other
    [[0.96, 0.80, 0.72], [0.42, 0.27, 0.19], [0.92, 0.80, 0.56], [0.70, 0.50, 0.35], [0.82, 0.62, 0.50]],
    dtype="float32",
)
_HAIR = np.array(  # black, blond, brown, gray
    [[0.08, 0.07, 0.07], [0.90, 0.78, 0.42], [0.45, 0.28, 0.15], [0.72, 0.72, 0.74]], dtype="float32"
)
_GRAY = 3
_ETHNICITY_PROBS = (0.3, 0.2, 0.2, 0.15, 0.15)
# Hair colour before greying (black, blond, brown), per ethnicity (rows as in `_SKIN`).
_BASE_HAIR_PROBS = np.array(
    [[0.25, 0.45, 0.30], [0.9, 0.0, 0.1], [0.85, 0.02, 0.13], [0.85, 0.0, 0.15], [0.5, 0.15, 0.35]]
)
_MAX_YAW, _MAX_ROLL = 40.0, 12.0
_EYE_V, _NOSE_V = -0.2, 0.18  # vertical positions in face units (-1 = top of the oval, 1 = chin)
_NOSE_DEPTH = 1.3  # the nose tip sticks out of the face cylinder, so it moves more with yaw


def generate_faces(num_examples: int, image_size: int = 64, seed: int = 0, noise: float = 0.03):
    """Generates synthetic face images with labels for all of `FACE_TASK_NAMES`.

    The module docstring lists what each label depends on and how it is drawn.

    Args:
        num_examples: int. Number of faces.
        image_size: int. Side of the square images, at least 16.
        seed: int. Seed of the numpy generator; the same seed gives identical arrays.
        noise: float. Standard deviation of the Gaussian pixel noise added after drawing.

    Returns:
        A tuple `(images, labels)`: float32 `(N, image_size, image_size, 3)` in `[0, 1]`, and a dict keyed by
        `FACE_TASK_NAMES` of int32 `(N,)` arrays (`smiling`, `eyeglasses`, `gender` with 1 = male,
        `hair_colour` indexing `HAIR_COLOURS`, `ethnicity` indexing `ETHNICITIES`) and float32 arrays `age`
        `(N, 1)` in years, `head_pose` `(N, 1)` yaw in degrees (negative = facing left, towards smaller x) and
        `landmarks` `(N, 10)`, the `(x, y)` of `LANDMARK_NAMES` divided by the image width and height. No label is
        missing.

    Raises:
        ValueError: if an argument is out of range.

    Example:

    >>> images, labels = generate_faces(4, image_size=32, seed=1)
    >>> images.shape, labels["landmarks"].shape, labels["smiling"].dtype
    ((4, 32, 32, 3), (4, 10), dtype('int32'))
    """
    _common.check_int("num_examples", num_examples)
    _common.check_int("image_size", image_size, minimum=16)
    if not noise >= 0:
        raise ValueError(f"Invalid value for `noise`. Expected a float >= 0. Received: noise={noise!r}")
    rng = np.random.default_rng(seed)
    latents = _sample_latents(rng, num_examples)
    geometry = _geometry(latents)
    images = np.empty((num_examples, image_size, image_size, 3), dtype="float32")
    for start in range(0, num_examples, _CHUNK):
        part = slice(start, start + _CHUNK)
        chunk = {name: value[part] for name, value in {**latents, **geometry}.items()}
        images[part] = _painting.draw(chunk, image_size, rng, noise)
    labels = {
        "smiling": latents["smiling"],
        "eyeglasses": latents["eyeglasses"],
        "gender": latents["gender"],
        "hair_colour": latents["hair_colour"],
        "ethnicity": latents["ethnicity"],
        "age": latents["age"][:, None],
        "head_pose": latents["yaw"][:, None],
        "landmarks": geometry["landmarks"],
    }
    return images, labels


def faces_dataset(
    num_examples: int,
    image_size: int = 64,
    seed: int = 0,
    batch_size: int = 32,
    shuffle: bool = False,
    noise: float = 0.03,
    drop_remainder: bool = False,
):
    """Returns `generate_faces(...)` as a batched `tf.data.Dataset` of `({"image": images}, labels)`.

    Args:
        num_examples, image_size, seed, noise: see `generate_faces`.
        batch_size: int. Examples per batch.
        shuffle: bool. Whether to reshuffle every epoch (the shuffle order is seeded with `seed` too).
        drop_remainder: bool. Whether to drop the last, smaller batch.

    Returns:
        A `tf.data.Dataset`.

    Example:

    >>> ds = faces_dataset(8, image_size=32, batch_size=4)
    >>> inputs, labels = next(iter(ds))
    >>> tuple(inputs["image"].shape), tuple(labels["age"].shape)
    ((4, 32, 32, 3), (4, 1))
    """
    images, labels = generate_faces(num_examples, image_size=image_size, seed=seed, noise=noise)
    dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
    return _common.batch_dataset(dataset, batch_size, shuffle, seed, drop_remainder)


# === Latent factors ===


def _sample_latents(rng, n):
    """Draws every per-face latent factor from `rng`: who, pose, what the face shows, then nuisances."""

    def uniform(low, high):
        return rng.uniform(low, high, n).astype("float32")

    def bernoulli(p):
        return rng.random(n) < p

    def symmetric(limit):  # in [-limit, limit], mostly near 0 (most photographs face the camera)
        return (limit * (2.0 * rng.beta(2.0, 2.0, n) - 1.0)).astype("float32")

    # Who: independent of each other.
    male = bernoulli(0.5)
    age = (18.0 + 62.0 * rng.beta(1.5, 2.0, n)).astype("float32")
    older = np.clip((age - 18.0) / 62.0, 0.0, 1.0)  # 0 at 18, 1 at 80
    ethnicity = rng.choice(5, size=n, p=_ETHNICITY_PROBS).astype("int32")
    yaw = symmetric(_MAX_YAW)
    # Hair: a base colour by ethnicity; it greys from a personal onset age, and counts as gray once half gray.
    cumulative = np.cumsum(_BASE_HAIR_PROBS[ethnicity], axis=1)
    base_hair = (rng.random(n)[:, None] > cumulative[:, :-1]).sum(axis=1)
    greyness = np.clip((age - rng.normal(45.0, 7.0, n)) / 15.0, 0.0, 1.0).astype("float32")
    hair_colour = np.where(greyness >= 0.5, _GRAY, base_hair).astype("int32")
    # What the face shows.
    smiling = bernoulli(0.55 - 0.25 * np.abs(yaw) / _MAX_YAW + np.where(male, -0.08, 0.08))
    smile = smiling
    return {
        "smiling": smiling.astype("int32"),
        "eyeglasses": bernoulli(0.15 + 0.3 * older).astype("int32"),
        "gender": male.astype("int32"),
        "hair_colour": hair_colour,
        "ethnicity": ethnicity,
        "age": age,
        "yaw": yaw,
        "roll": symmetric(_MAX_ROLL),
        "wrinkles": (np.clip((age - 22.0) / 45.0, 0.0, 1.0) * uniform(0.8, 1.2)).astype("float32"),
        "long_hair": np.where(male, bernoulli(0.12), bernoulli(0.85)),
        "recession": np.where(male, np.clip((age - 30.0) / 40.0, 0.0, 1.0) * uniform(0.0, 1.0), 0.0),
        "beard": np.where(male & bernoulli(0.2 + 0.5 * np.clip((age - 18.0) / 30.0, 0.0, 1.0)), uniform(0.5, 0.9), 0.0),
        "makeup": ~male & bernoulli(0.8 - 0.5 * older),
        "centre_x": uniform(0.44, 0.56),
        "centre_y": uniform(0.5, 0.58),
        "scale": uniform(0.85, 1.1),
        "jaw": np.where(male, 1.1, 0.92).astype("float32") * uniform(0.96, 1.04),
        "eye_u": uniform(0.39, 0.45),
        "eye_v": _EYE_V + uniform(-0.04, 0.04),
        "eye_open": np.where(smile, 0.7, 1.0).astype("float32") * uniform(0.9, 1.1),
        "mouth_u": np.where(smile, uniform(0.4, 0.46), uniform(0.3, 0.35)),
        "mouth_v": np.where(smile, 0.44, 0.5).astype("float32") + uniform(-0.03, 0.03),
        "mouth_depth": np.where(smile, uniform(0.13, 0.18), uniform(-0.03, 0.02)),
        "skin": _SKIN[ethnicity] * uniform(0.94, 1.04)[:, None] + rng.normal(0.0, 0.015, (n, 3)),
        "hair": _HAIR[base_hair] + greyness[:, None] * (_HAIR[_GRAY] - _HAIR[base_hair])
        + rng.normal(0.0, 0.03, (n, 3)),
        "background": uniform(0.15, 0.5)[:, None]
        + np.stack([np.zeros(n, "float32"), uniform(0.05, 0.2), uniform(0.2, 0.35)], axis=1),
        "gradient": uniform(-0.1, 0.1),
        "brightness": uniform(0.8, 1.2),
    }


# === Geometry ===


def _geometry(latents):
    """Face oval radii, feature positions in the face's own (unrolled) frame, and the rolled landmark labels.

    Positions are in image units (fractions of the width/height). Features sit on a cylinder that turns with yaw;
    roll then rotates the whole face about its centre, so the labels are the face-frame points rotated by it.
    """
    ry = 0.3 * latents["scale"]
    rx = 0.78 * ry * latents["jaw"]
    theta = np.deg2rad(latents["yaw"])
    cx, cy = latents["centre_x"], latents["centre_y"]

    def turn(u):  # x of a point `u` half-widths off-centre on the frontal face, once the head turns
        return cx + rx * np.sin(np.arcsin(np.clip(u, -1.0, 1.0)) + theta)

    eye_y = cy + latents["eye_v"] * ry
    mouth_y = cy + latents["mouth_v"] * ry
    points = [
        (turn(-latents["eye_u"]), eye_y),
        (turn(latents["eye_u"]), eye_y),
        (cx + _NOSE_DEPTH * rx * np.sin(theta), cy + _NOSE_V * ry),
        (turn(-latents["mouth_u"]), mouth_y),
        (turn(latents["mouth_u"]), mouth_y),
    ]
    face_landmarks = np.stack([coord for point in points for coord in point], axis=1)
    cos, sin = np.cos(np.deg2rad(latents["roll"])), np.sin(np.deg2rad(latents["roll"]))
    dx, dy = face_landmarks[:, 0::2] - cx[:, None], face_landmarks[:, 1::2] - cy[:, None]
    landmarks = np.empty_like(face_landmarks)
    landmarks[:, 0::2] = cx[:, None] + cos[:, None] * dx - sin[:, None] * dy
    landmarks[:, 1::2] = cy[:, None] + sin[:, None] * dx + cos[:, None] * dy
    # Horizontal foreshortening of each eye: the side turned away is compressed.
    eye_cos = np.stack([np.cos(np.arcsin(u) + theta) for u in (-latents["eye_u"], latents["eye_u"])], 1)
    # Wrinkle end points, turned with the head: crow's feet fan out from the outer eye corners, the folds run
    # from beside the nose to beyond the mouth corners.
    # Wrinkle end points (x, per side: left then right), turned with the head: crow's feet fan out from the outer
    # eye corners, the folds run from beside the nose to beyond the mouth corners.
    crow_x = np.stack([np.stack([turn(s * (latents["eye_u"] + 0.27)), turn(s * (latents["eye_u"] + 0.4))], -1)
                       for s in (-1.0, 1.0)], 1)
    fold_x = np.stack([np.stack([turn(s * 0.2), turn(s * (latents["mouth_u"] + 0.1))], -1) for s in (-1.0, 1.0)], 1)
    return {
        "rx": rx,
        "ry": ry,
        "landmarks": landmarks.astype("float32"),
        "face_landmarks": face_landmarks.astype("float32"),
        "eye_cos": eye_cos,
        "crow_x": crow_x,
        "fold_x": fold_x,
    }
