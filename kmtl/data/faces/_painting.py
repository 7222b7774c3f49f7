"""Painting the synthetic faces of `kmtl.data.faces.synthetic` from their latent factors and geometry.

Everything is drawn in each face's own frame (the pixel grid rotated back by the face's roll), in pixel units, with
every per-face value shaped `(n, 1, 1)` to broadcast over the `(n, H, W)` grid.
"""

import numpy as np

_SCLERA = np.array([0.94, 0.94, 0.9], dtype="float32")
_IRIS = np.array([0.1, 0.07, 0.05], dtype="float32")
_FRAME = np.array([0.05, 0.05, 0.07], dtype="float32")
_TEETH = np.array([0.96, 0.94, 0.88], dtype="float32")
_LIPS = np.array([0.5, 0.12, 0.15], dtype="float32")
_LIPSTICK = np.array([0.78, 0.06, 0.22], dtype="float32")
_EYE_SHADOW = np.array([0.42, 0.28, 0.52], dtype="float32")
_FRINGE_V = -0.72  # where the fringe ends, in face units (-1 = top of the oval); a receding hairline moves it up
_FOREHEAD_V = (-0.64, -0.56, -0.48)  # forehead lines, the first appearing youngest
_BEARD_V = 0.3  # a beard covers the face below this line (moustache included)


def draw(g, size, rng, noise):
    """Draws one chunk of faces from latents + geometry `g`, then jitters brightness and adds noise."""

    def px(value):
        return (np.asarray(value, dtype="float32") * size)[:, None, None]

    grid = np.arange(size, dtype="float32") + 0.5
    cx, cy = px(g["centre_x"]), px(g["centre_y"])
    roll = np.deg2rad(g["roll"])[:, None, None]
    dx, dy = grid[None, None, :] - cx, grid[None, :, None] - cy
    p = {
        "x": cx + np.cos(roll) * dx + np.sin(roll) * dy,  # the grid in the face's unrolled frame
        "y": cy - np.sin(roll) * dx + np.cos(roll) * dy,
        "cx": cx,
        "cy": cy,
        "rx": px(g["rx"]),
        "ry": px(g["ry"]),
        "sin": np.sin(np.deg2rad(g["yaw"]))[:, None, None],
        "lm": [px(g["face_landmarks"][:, i]) for i in range(g["face_landmarks"].shape[1])],
        "skin": g["skin"].astype("float32"),
        "line_half": np.maximum(0.035 * px(g["ry"]), 0.45),  # half-thickness of wrinkles, in pixels
    }
    image = _draw_head(g, p, grid, size)
    _draw_wrinkles(g, p, image)
    _draw_beard_and_fringe(g, p, image)
    _draw_eyes(g, p, image)
    _draw_nose_and_mouth(g, p, image)
    image *= g["brightness"][:, None, None, None]
    if noise > 0:
        image += noise * rng.standard_normal(image.shape, dtype="float32")
    return np.clip(image, 0.0, 1.0, out=image)


# === Shapes (coverage in [0, 1] with a one-pixel soft edge) ===


def _ellipse(x, y, cx, cy, rx, ry):
    """Coverage of a filled ellipse."""
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


# === Parts of the face ===


def _draw_head(g, p, grid, size):
    """Background (lit by a vertical gradient of the picture, not of the face), hair behind the face, face oval."""
    x, y, cx, cy, rx, ry = p["x"], p["y"], p["cx"], p["cy"], p["rx"], p["ry"]
    n = len(g["yaw"])
    shade = 1.0 + g["gradient"][:, None, None, None] * (grid[None, :, None, None] / size - 0.5)
    image = np.broadcast_to(g["background"][:, None, None, :] * shade, (n, size, size, 3)).astype("float32")
    # Hair behind the face: a cap for short hair, a frame reaching the chin for long hair.
    long_hair = g["long_hair"][:, None, None]
    hair_cy = cy + np.where(long_hair, 0.1, -0.15) * ry
    hair_rx = rx * np.where(long_hair, 1.32, 1.15)
    hair_ry = ry * np.where(long_hair, 1.35, 1.05)
    hair_end = cy + np.where(long_hair, 0.95, -0.35) * ry
    _blend(image, _ellipse(x, y, cx, hair_cy, hair_rx, hair_ry) * _above(y, hair_end), g["hair"])
    _blend(image, _ellipse(x, y, cx, cy, rx, ry), p["skin"])
    return image


def _draw_wrinkles(g, p, image):
    """Forehead lines (more of them with age), crow's feet at the outer eye corners and nose-to-mouth folds."""
    x, y, cx, cy, rx, ry, half = p["x"], p["y"], p["cx"], p["cy"], p["rx"], p["ry"], p["line_half"]
    wrinkles = g["wrinkles"][:, None, None]
    colour = p["skin"] * 0.45
    shift = 0.6 * rx * p["sin"]  # the forehead turns with the head like the other features
    for i, v in enumerate(_FOREHEAD_V):
        strength = np.clip(1.6 * wrinkles - 0.35 * i, 0.0, 1.0)
        line = _segment(x, y, cx + shift - 0.4 * rx, cy + v * ry, cx + shift + 0.4 * rx, cy + v * ry, half)
        _blend(image, line * strength, colour)
    eye_y = p["lm"][1]
    mouth_y = p["lm"][7]
    for side in (0, 1):
        (c0, c1), (f0, f1) = _side_x(g, p, side)
        for dv in (-0.07, 0.07):  # crow's feet: two short lines fanning out from the outer corner
            line = _segment(x, y, c0, eye_y, c1, eye_y + dv * ry, half)
            _blend(image, line * np.clip(1.4 * wrinkles - 0.3, 0.0, 1.0), colour)
        fold = _segment(x, y, f0, cy + 0.28 * ry, f1, mouth_y + 0.06 * ry, half)
        _blend(image, fold * np.clip(1.3 * wrinkles - 0.2, 0.0, 1.0), colour)


def _side_x(g, p, side):
    """Pixel x of the crow's-feet and fold end points on one side (0 = left, 1 = right)."""
    size = p["x"].shape[-1]
    return [tuple((g[name][:, side, end] * size)[:, None, None] for end in (0, 1)) for name in ("crow_x", "fold_x")]


def _draw_beard_and_fringe(g, p, image):
    """A beard (its strength 0 for none) below the nose, in the hair's colour; the fringe above the forehead."""
    y, cx, cy, rx, ry = p["y"], p["cx"], p["cy"], p["rx"], p["ry"]
    face = _ellipse(p["x"], y, cx, cy, rx, ry)
    beard = g["beard"][:, None, None] * face * (1.0 - _above(y, cy + _BEARD_V * ry))
    _blend(image, beard, g["hair"] * 0.8)
    fringe_v = _FRINGE_V - 0.2 * g["recession"][:, None, None]
    _blend(image, face * _above(y, cy + fringe_v * ry), g["hair"])


def _draw_eyes(g, p, image):
    """Eye shadow where made up; eyes (white, dark iris centred on the landmark), narrowed by a smile; glasses."""
    x, y, rx, ry = p["x"], p["y"], p["rx"], p["ry"]
    glasses = g["eyeglasses"].astype("float32")[:, None, None]
    makeup = g["makeup"].astype("float32")[:, None, None]
    eye_open = g["eye_open"][:, None, None]
    ring_half = np.maximum(0.035 * ry, 0.4)
    rings = []
    for side in (0, 1):
        ex, ey = p["lm"][2 * side], p["lm"][2 * side + 1]
        squeeze = g["eye_cos"][:, side][:, None, None]
        sclera_rx, sclera_ry = np.maximum(0.17 * rx * squeeze, 1.0), np.maximum(0.09 * ry * eye_open, 1.0)
        shadow = _ellipse(x, y, ex, ey - 0.07 * ry, sclera_rx * 1.25, np.maximum(0.1 * ry, 1.0))
        _blend(image, 0.7 * makeup * shadow, _EYE_SHADOW)
        _blend(image, _ellipse(x, y, ex, ey, sclera_rx, sclera_ry), _SCLERA)
        iris_ry = np.maximum(0.07 * ry * np.minimum(eye_open, 1.0), 1.2)
        _blend(image, _ellipse(x, y, ex, ey, np.maximum(0.07 * ry * squeeze, 1.2), iris_ry), _IRIS)
        ring_rx = np.maximum(0.26 * rx * squeeze, sclera_rx + 1.2)
        _blend(image, _ring(x, y, ex, ey, ring_rx, 0.2 * ry, ring_half) * glasses, _FRAME)
        rings.append((ex, ey, ring_rx))
    (lx, ly, lr), (rx_, ry_, rr) = rings
    _blend(image, _segment(x, y, lx + lr, ly, rx_ - rr, ry_, ring_half) * glasses, _FRAME)


def _draw_nose_and_mouth(g, p, image):
    """Nose bridge and shaded tip at the nose landmark; mouth curve between the corner landmarks, lipstick where
    made up."""
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
    makeup = g["makeup"][:, None, None]
    half = np.maximum(0.04 * ry, 0.5) * np.where(makeup, 1.4, 1.0)
    lips = np.clip(half + 0.5 - np.hypot(x - xl - (xr - xl) * t, y - curve), 0.0, 1.0)
    _blend(image, lips, np.where(makeup[..., None], _LIPSTICK, _LIPS))
