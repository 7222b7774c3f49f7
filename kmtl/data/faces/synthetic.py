"""Deterministic synthetic faces labelled for every face task, drawn with vectorised numpy.

Each face comes from a few latent variables: where the face is (centre, scale), how it is turned (yaw), and who it
is (gender, age, ethnicity, hair colour, smiling, glasses). The tasks share that structure: the landmarks, the eyes,
glasses, mouth and wrinkles all sit at positions set by the same centre, scale and yaw, so a shared representation
of "where the face and its parts are" helps every task.

What each label changes in the pixels:
- head_pose (yaw, degrees, negative = facing left, i.e. towards smaller x in the image): features on a cylinder
  turn with the head, so the nose moves sideways more than the eyes and the side turned away is compressed.
- landmarks: exact ground truth; the iris centres, the nose tip and the mouth corners are drawn at them.
- smiling: a wider mouth whose corners rise above a curved, open mouth showing teeth.
- eyeglasses: dark rings around both eyes and a bridge between them.
- gender: men have wider jaws (a wider oval) and usually short hair, women usually long hair framing the face.
- hair_colour: the colour of the hair cap, fringe and long hair; gray hair is likelier with age.
- ethnicity: the skin tone.
- age: forehead wrinkles, darker with age (and, through hair_colour, gray hair).
Every image gets its own background, brightness jitter and Gaussian pixel noise.
"""

import numpy as np
import tensorflow as tf

from kmtl.data import _common

_CHUNK = 256  # images drawn per vectorised step (bounds memory to a few MB per array)

_SKIN = np.array(  # white, black, asian, indian, other
    [[0.96, 0.80, 0.72], [0.42, 0.27, 0.19], [0.92, 0.80, 0.56], [0.70, 0.50, 0.35], [0.82, 0.62, 0.50]],
    dtype="float32",
)
_HAIR = np.array(  # black, blond, brown, gray
    [[0.08, 0.07, 0.07], [0.90, 0.78, 0.42], [0.45, 0.28, 0.15], [0.72, 0.72, 0.74]], dtype="float32"
)
_ETHNICITY_PROBS = (0.3, 0.2, 0.2, 0.15, 0.15)
_NON_GRAY_PROBS = (0.38, 0.27, 0.35)  # black, blond, brown, when the hair is not gray
_MAX_YAW = 40.0
_EYE_V, _NOSE_V = -0.2, 0.18  # vertical positions in face units (-1 = top of the oval, 1 = chin)
_NOSE_DEPTH = 1.3  # the nose tip sticks out of the face cylinder, so it moves more with yaw
_WRINKLE_V = (-0.6, -0.5)
_FRINGE_V = -0.72


def generate_faces(num_examples: int, image_size: int = 64, seed: int = 0, noise: float = 0.03):
    """Generates synthetic face images with labels for all of `FACE_TASK_NAMES`.

    Args:
        num_examples: int. Number of faces.
        image_size: int. Side of the square images, at least 16.
        seed: int. Seed of the numpy generator; the same seed gives identical arrays.
        noise: float. Standard deviation of the Gaussian pixel noise added after drawing.

    Returns:
        A tuple `(images, labels)`: float32 `(N, image_size, image_size, 3)` in `[0, 1]`, and a dict keyed by
        `FACE_TASK_NAMES` of int32 `(N,)` arrays (`smiling`, `eyeglasses`, `gender` with 1 = male,
        `hair_colour` indexing `HAIR_COLOURS`, `ethnicity` indexing `ETHNICITIES`) and float32 arrays `age`
        `(N, 1)` in years, `head_pose` `(N, 1)` yaw in degrees and `landmarks` `(N, 10)`, the `(x, y)` of
        `LANDMARK_NAMES` divided by the image width and height. No label is missing.

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
        images[part] = _draw(chunk, image_size, rng, noise)
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


# === Latent variables and geometry ===


def _sample_latents(rng, n):
    """Draws every per-face latent variable (labels first, then nuisances) from `rng`."""

    def uniform(low, high):
        return rng.uniform(low, high, n).astype("float32")

    smiling = (rng.random(n) < 0.5).astype("int32")
    eyeglasses = (rng.random(n) < 0.4).astype("int32")
    gender = (rng.random(n) < 0.5).astype("int32")
    age = uniform(18.0, 80.0)
    p_gray = 0.05 + 0.5 * np.clip((age - 30.0) / 50.0, 0.0, 1.0)
    non_gray = rng.choice(3, size=n, p=_NON_GRAY_PROBS)
    hair_colour = np.where(rng.random(n) < p_gray, 3, non_gray).astype("int32")
    ethnicity = rng.choice(5, size=n, p=_ETHNICITY_PROBS).astype("int32")
    smile = smiling == 1
    return {
        "smiling": smiling,
        "eyeglasses": eyeglasses,
        "gender": gender,
        "hair_colour": hair_colour,
        "ethnicity": ethnicity,
        "age": age,
        "yaw": uniform(-_MAX_YAW, _MAX_YAW),
        "long_hair": np.where(gender == 1, rng.random(n) < 0.15, rng.random(n) < 0.85),
        "centre_x": uniform(0.44, 0.56),
        "centre_y": uniform(0.5, 0.58),
        "scale": uniform(0.85, 1.1),
        "jaw": np.where(gender == 1, 1.1, 0.92).astype("float32") * uniform(0.96, 1.04),
        "eye_u": uniform(0.39, 0.45),
        "eye_v": _EYE_V + uniform(-0.04, 0.04),
        "mouth_u": np.where(smile, uniform(0.4, 0.46), uniform(0.3, 0.35)),
        "mouth_v": np.where(smile, 0.44, 0.5).astype("float32") + uniform(-0.03, 0.03),
        "mouth_depth": np.where(smile, uniform(0.13, 0.18), uniform(-0.03, 0.02)),
        "skin": _SKIN[ethnicity] * uniform(0.94, 1.04)[:, None] + rng.normal(0.0, 0.015, (n, 3)),
        "hair": _HAIR[hair_colour] + rng.normal(0.0, 0.03, (n, 3)),
        "background": uniform(0.15, 0.5)[:, None]
        + np.stack([np.zeros(n, "float32"), uniform(0.05, 0.2), uniform(0.2, 0.35)], axis=1),
        "gradient": uniform(-0.1, 0.1),
        "brightness": uniform(0.8, 1.2),
    }


def _geometry(latents):
    """Face oval radii and landmark positions, in image units (fractions of the width/height)."""
    ry = 0.3 * latents["scale"]
    rx = 0.78 * ry * latents["jaw"]
    theta = np.deg2rad(latents["yaw"])
    cx, cy = latents["centre_x"], latents["centre_y"]

    def turn(u):  # x of a point `u` half-widths off-centre on the frontal face, once the head turns
        return cx + rx * np.sin(np.arcsin(u) + theta)

    eye_y = cy + latents["eye_v"] * ry
    mouth_y = cy + latents["mouth_v"] * ry
    points = [
        (turn(-latents["eye_u"]), eye_y),
        (turn(latents["eye_u"]), eye_y),
        (cx + _NOSE_DEPTH * rx * np.sin(theta), cy + _NOSE_V * ry),
        (turn(-latents["mouth_u"]), mouth_y),
        (turn(latents["mouth_u"]), mouth_y),
    ]
    landmarks = np.stack([coord for point in points for coord in point], axis=1)
    # Horizontal foreshortening of each eye: the side turned away is compressed.
    eye_cos = np.stack([np.cos(np.arcsin(u) + theta) for u in (-latents["eye_u"], latents["eye_u"])], 1)
    return {"rx": rx, "ry": ry, "landmarks": landmarks.astype("float32"), "eye_cos": eye_cos}


# === Drawing (pixel units; every per-face value is shaped (n, 1, 1) to broadcast over the grid) ===

_SCLERA = np.array([0.94, 0.94, 0.9], dtype="float32")
_IRIS = np.array([0.1, 0.07, 0.05], dtype="float32")
_FRAME = np.array([0.05, 0.05, 0.07], dtype="float32")
_TEETH = np.array([0.96, 0.94, 0.88], dtype="float32")
_LIPS = np.array([0.5, 0.12, 0.15], dtype="float32")


def _ellipse(x, y, cx, cy, rx, ry):
    """Coverage of a filled ellipse, with a one-pixel soft edge."""
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return np.clip(0.5 - (r - 1.0) * np.minimum(rx, ry), 0.0, 1.0)


def _ring(x, y, cx, cy, rx, ry, half):
    """Coverage of an elliptic ring of half-thickness `half` pixels."""
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return np.clip(half + 0.5 - np.abs(r - 1.0) * np.minimum(rx, ry), 0.0, 1.0)


def _segment(x, y, x0, y0, x1, y1, half):
    """Coverage of a straight line from `(x0, y0)` to `(x1, y1)` of half-thickness `half` pixels."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    return np.clip(half + 0.5 - np.hypot(x - x0 - t * dx, y - y0 - t * dy), 0.0, 1.0)


def _above(y, limit):
    """Coverage of the half-plane above the horizontal line `y = limit` (smaller y is higher)."""
    return np.clip(0.5 - (y - limit), 0.0, 1.0)


def _blend(image, alpha, colour):
    """Paints `colour` ((n, 3) or (3,)) over `image` in place with coverage `alpha` (n, H, W)."""
    colour = np.asarray(colour, dtype="float32")
    if colour.ndim == 2:
        colour = colour[:, None, None, :]
    alpha = np.broadcast_to(alpha, image.shape[:3])
    rows, cols = np.flatnonzero(alpha.any(axis=(0, 2))), np.flatnonzero(alpha.any(axis=(0, 1)))
    if rows.size:  # only touch the rows and columns some face covers
        box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        image[box] += alpha[box][..., None] * (colour - image[box])


def _draw(g, size, rng, noise):
    """Draws one chunk of faces from latents + geometry `g`, then jitters brightness and adds noise."""

    def px(value):
        return (np.asarray(value, dtype="float32") * size)[:, None, None]

    grid = np.arange(size, dtype="float32") + 0.5
    p = {
        "x": grid[None, None, :],
        "y": grid[None, :, None],
        "cx": px(g["centre_x"]),
        "cy": px(g["centre_y"]),
        "rx": px(g["rx"]),
        "ry": px(g["ry"]),
        "sin": np.sin(np.deg2rad(g["yaw"]))[:, None, None],
        "lm": [px(g["landmarks"][:, i]) for i in range(g["landmarks"].shape[1])],
        "skin": g["skin"].astype("float32"),
    }
    image = _draw_head(g, p, size)
    _draw_eyes(g, p, image)
    _draw_nose_and_mouth(g, p, image)
    image *= g["brightness"][:, None, None, None]
    if noise > 0:
        image += noise * rng.standard_normal(image.shape, dtype="float32")
    return np.clip(image, 0.0, 1.0, out=image)


def _draw_head(g, p, size):
    """Background, hair, face oval, fringe and forehead wrinkles."""
    x, y, cx, cy, rx, ry = p["x"], p["y"], p["cx"], p["cy"], p["rx"], p["ry"]
    n = len(g["yaw"])
    shade = 1.0 + g["gradient"][:, None, None, None] * (y[..., None] / size - 0.5)
    image = np.broadcast_to(g["background"][:, None, None, :] * shade, (n, size, size, 3)).astype("float32")
    # Hair behind the face: a cap for short hair, a frame reaching the chin for long hair.
    long_hair = g["long_hair"][:, None, None]
    hair_cy = cy + np.where(long_hair, 0.1, -0.15) * ry
    hair_rx = rx * np.where(long_hair, 1.32, 1.15)
    hair_ry = ry * np.where(long_hair, 1.35, 1.05)
    hair_end = cy + np.where(long_hair, 0.95, -0.35) * ry
    _blend(image, _ellipse(x, y, cx, hair_cy, hair_rx, hair_ry) * _above(y, hair_end), g["hair"])
    face = _ellipse(x, y, cx, cy, rx, ry)
    _blend(image, face, p["skin"])
    _blend(image, face * _above(y, cy + _FRINGE_V * ry), g["hair"])
    # Forehead wrinkles, darker with age; they turn with the head like the other features.
    strength = np.clip((g["age"] - 25.0) / 45.0, 0.0, 0.9)[:, None, None]
    half = np.maximum(0.03 * ry, 0.3)
    shift = 0.6 * rx * p["sin"]
    for v in _WRINKLE_V:
        line = _segment(x, y, cx + shift - 0.4 * rx, cy + v * ry, cx + shift + 0.4 * rx, cy + v * ry, half)
        _blend(image, line * strength, p["skin"] * 0.5)
    return image


def _draw_eyes(g, p, image):
    """Eyes (white, dark iris centred on the landmark) and, where worn, glasses: rings plus a bridge."""
    x, y, rx, ry = p["x"], p["y"], p["rx"], p["ry"]
    glasses = g["eyeglasses"].astype("float32")[:, None, None]
    ring_half = np.maximum(0.035 * ry, 0.4)
    rings = []
    for side in (0, 1):
        ex, ey = p["lm"][2 * side], p["lm"][2 * side + 1]
        squeeze = g["eye_cos"][:, side][:, None, None]
        sclera_rx, sclera_ry = np.maximum(0.17 * rx * squeeze, 1.0), np.maximum(0.09 * ry, 1.0)
        _blend(image, _ellipse(x, y, ex, ey, sclera_rx, sclera_ry), _SCLERA)
        iris_ry = np.maximum(0.07 * ry, 1.2)
        _blend(image, _ellipse(x, y, ex, ey, np.maximum(iris_ry * squeeze, 1.2), iris_ry), _IRIS)
        ring_rx = np.maximum(0.26 * rx * squeeze, sclera_rx + 1.2)
        _blend(image, _ring(x, y, ex, ey, ring_rx, 0.2 * ry, ring_half) * glasses, _FRAME)
        rings.append((ex, ey, ring_rx))
    (lx, ly, lr), (rx_, ry_, rr) = rings
    _blend(image, _segment(x, y, lx + lr, ly, rx_ - rr, ry_, ring_half) * glasses, _FRAME)


def _draw_nose_and_mouth(g, p, image):
    """Nose bridge and shaded tip at the nose landmark; mouth curve between the corner landmarks."""
    x, y, cx, rx, ry = p["x"], p["y"], p["cx"], p["rx"], p["ry"]
    nx, ny = p["lm"][4], p["lm"][5]
    top_y = p["lm"][1] + 0.08 * ry
    line_half = np.maximum(0.03 * ry, 0.35)
    bridge = _segment(x, y, cx + 0.8 * rx * p["sin"], top_y, nx, ny - 0.05 * ry, line_half)
    _blend(image, 0.5 * bridge, p["skin"] * 0.75)
    tip = _ellipse(x, y, nx, ny, np.maximum(0.1 * rx, 1.0), np.maximum(0.07 * ry, 1.0))
    _blend(image, tip, p["skin"] * 0.6)
    # Mouth: y(t) = chord(t) + 4 * depth * t * (1 - t) between the corners; a smile (depth > 0) opens on teeth.
    (xl, yl), (xr, yr) = (p["lm"][6], p["lm"][7]), (p["lm"][8], p["lm"][9])
    depth = (g["mouth_depth"][:, None, None] * ry).astype("float32")
    t = np.clip((x - xl) / (xr - xl), 0.0, 1.0)
    chord = yl + (yr - yl) * t
    curve = chord + 4.0 * depth * t * (1.0 - t)
    span = np.clip(np.minimum(x - xl, xr - x) + 0.5, 0.0, 1.0)
    teeth = np.clip(np.minimum(y - chord, curve - y) + 0.5, 0.0, 1.0) * span * (depth > 0)
    _blend(image, teeth, _TEETH)
    lips = np.clip(np.maximum(0.04 * ry, 0.5) + 0.5 - np.hypot(x - xl - (xr - xl) * t, y - curve), 0.0, 1.0)
    _blend(image, lips, _LIPS)
