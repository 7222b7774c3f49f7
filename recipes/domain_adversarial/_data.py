"""Data of the domain-adversarial recipe: two domains of one classification task, the target's labels held back.

Every split holds source and target examples. Training batches are half source (main-task label known) and half
target (main-task label missing, -1); the domain label (0 source, 1 target) is known for all. Validation keeps the
source's main-task labels only, so nothing chooses settings with target labels; the test split keeps the target's
only, so the main task's test metrics are target-domain metrics. The arrays behind the splits (`DomainData.parts`)
keep every label, for the report.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

import kmtl
from kmtl.data.images import FASHION_CATEGORIES, load_fashion_mnist
from kmtl.recipe import RecipeData

SOURCES = ("synthetic", "fashion-mnist")
# The shifts each source offers; the first is its default.
SHIFTS = {"synthetic": ("rotate",), "fashion-mnist": ("invert", "noise")}
# Examples per domain in training when `num_train` is None; validation and test hold `num_test` per domain.
NUM_TRAIN = {"synthetic": 1000, "fashion-mnist": 10000}
NUM_TEST = {"synthetic": 1000, "fashion-mnist": 5000}
# The embedded data: two interleaved half-moons (scikit-learn's `make_moons`, noise 0.1); the target domain is the
# same task rotated by this angle (degrees) about the centre of the moons.
ROTATION = 30.0
MOONS_NOISE = 0.1
MOONS_CENTRE = (0.5, 0.25)
# Fashion-MNIST "noise": Gaussian noise of this standard deviation added to every pixel (in [0, 1]), then clipped.
NOISE_SD = 0.5
DOMAIN_NAMES = ["source", "target"]
MISSING = -1


def domain_task() -> kmtl.Task:
    """The auxiliary domain classifier's task: 0 source, 1 target; trained, never exported."""
    return kmtl.Task("domain", "binary", auxiliary=True, label_names=DOMAIN_NAMES)


def main_task(source: str) -> kmtl.Task:
    """The main task of a source: `moon` (which half-moon, binary) or `category` (Fashion-MNIST's 10 classes)."""
    if source == "fashion-mnist":
        return kmtl.Task("category", "multiclass", num_classes=10, label_names=FASHION_CATEGORIES)
    return kmtl.Task("moon", "binary", label_names=["upper", "lower"])


def make_tasks(source: str = "synthetic") -> list[kmtl.Task]:
    """The recipe's tasks for a source: its main task, then `domain`."""
    return [main_task(source), domain_task()]


@dataclasses.dataclass
class Domains:
    """One split's examples of both domains with every label: inputs `x_*`, main-task labels `y_*` (int32)."""

    x_source: np.ndarray
    y_source: np.ndarray
    x_target: np.ndarray
    y_target: np.ndarray


def rotate(points: np.ndarray, degrees: float, centre=MOONS_CENTRE) -> np.ndarray:
    """`points` `(n, 2)` rotated by `degrees` (counter-clockwise) about `centre`."""
    angle = math.radians(degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return ((points - centre) @ rotation.T + centre).astype("float32")


def generate_moons(num_train: int, num_test: int, seed: int = 0, rotation: float = ROTATION) -> tuple:
    """Deterministic two-domain moons: source points as drawn, target points (other draws) rotated by `rotation`.

    Returns:
        `(train, val, test)` `Domains`, `num_train`, `num_test` and `num_test` examples per domain.
    """
    from sklearn.datasets import make_moons

    sizes = (num_train, num_test, num_test)
    parts = []
    for i, size in enumerate(sizes):
        xs, ys = make_moons(size, noise=MOONS_NOISE, random_state=seed * 10 + 2 * i)
        xt, yt = make_moons(size, noise=MOONS_NOISE, random_state=seed * 10 + 2 * i + 1)
        parts.append(Domains(xs.astype("float32"), ys.astype("int32"), rotate(xt, rotation), yt.astype("int32")))
    return tuple(parts)


def shift_images(images: np.ndarray, shift: str, seed: int = 0) -> np.ndarray:
    """Fashion-MNIST images `(n, 28, 28, 1)` in [0, 1] shifted: `"invert"` (1 - x) or `"noise"` (Gaussian noise of
    sd `NOISE_SD`, clipped to [0, 1], drawn with `seed`)."""
    if shift == "invert":
        return (1.0 - images).astype("float32")
    noise = np.random.default_rng(seed).normal(0.0, NOISE_SD, images.shape)
    return np.clip(images + noise, 0.0, 1.0).astype("float32")


def load_fashion_domains(num_train: int, num_test: int, shift: str, seed: int = 0) -> tuple:
    """Fashion-MNIST (Debian's `dataset-fashion-mnist`) as two domains: clean source, shifted target.

    Training and validation come from the training file (source and target are different images), test from the
    test file (its first `num_test` images clean, the next `num_test` shifted).

    Raises:
        FileNotFoundError: when the package is not installed (naming it).
        ValueError: when the files hold fewer images than asked for.
    """
    needed = {"train": 2 * (num_train + num_test), "test": 2 * num_test}
    arrays = {}
    for split, count in needed.items():
        images, labels = load_fashion_mnist(split, image_size=28, limit=count)
        if len(images) < count:
            raise ValueError(
                f"Fashion-MNIST's {split} file holds {len(images)} images; num_train={num_train} and "
                f"num_test={num_test} per domain need {count}."
            )
        arrays[split] = (images, labels["category"])
    images, category = arrays["train"]
    cuts = np.cumsum([0, num_train, num_train, num_test, num_test])
    train = Domains(images[cuts[0]:cuts[1]], category[cuts[0]:cuts[1]],
                    shift_images(images[cuts[1]:cuts[2]], shift, seed), category[cuts[1]:cuts[2]])
    val = Domains(images[cuts[2]:cuts[3]], category[cuts[2]:cuts[3]],
                  shift_images(images[cuts[3]:cuts[4]], shift, seed + 1), category[cuts[3]:cuts[4]])
    images, category = arrays["test"]
    test = Domains(images[:num_test], category[:num_test],
                   shift_images(images[num_test:], shift, seed + 2), category[num_test:])
    return train, val, test


@dataclasses.dataclass
class DomainData(RecipeData):
    """`(train, val, test)` datasets, with the arrays they came from (`parts`: `Domains` per split)."""

    parts: tuple = ()


def load_data(
    source: str = "synthetic",
    *,
    batch_size: int = 128,
    seed: int = 0,
    shift: str | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    epochs: int = 30,
    tasks=None,
) -> DomainData:
    """Loads two domains and returns batched datasets of `(inputs, {main task: labels, "domain": labels})`.

    Args:
        source: `"synthetic"` (embedded two-domain moons) or `"fashion-mnist"` (Debian's `dataset-fashion-mnist`).
        batch_size: int >= 2. Examples per training batch, half source and half target.
        seed: int. Seed of the data and of the shuffling.
        shift: the target domain's shift: `"rotate"` (synthetic: by `ROTATION` degrees); `"invert"` or `"noise"`
            (fashion-mnist). None: the source's first.
        num_train: int. Training examples per domain (None: `NUM_TRAIN[source]`).
        num_test: int. Validation and test examples per domain (None: `NUM_TEST[source]`).
        epochs: int. The run's epochs: with the steps per epoch they set `schedule_steps`, the span of the
            gradient-reversal schedule.
        tasks: names of the tasks to keep (default: both); `[main task]` for the model without a domain head.

    Returns:
        `DomainData`; `model_settings` holds `input_shape`, `schedule_steps` and the kept `tasks`.
    """
    import tensorflow as tf

    if source not in SOURCES:
        raise ValueError(f"Invalid value for `source`. Expected one of {SOURCES}. Received: source={source!r}")
    shift = SHIFTS[source][0] if shift is None else shift
    if shift not in SHIFTS[source]:
        raise ValueError(
            f"Invalid value for `shift` with source={source!r}. Expected one of {SHIFTS[source]}. "
            f"Received: shift={shift!r}"
        )
    num_train = NUM_TRAIN[source] if num_train is None else num_train
    num_test = NUM_TEST[source] if num_test is None else num_test
    for name, value, low in (("batch_size", batch_size, 2), ("num_train", num_train, 1), ("num_test", num_test, 1),
                             ("epochs", epochs, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"Invalid value for `{name}`. Expected an int >= {low}. Received: {name}={value!r}")
    all_tasks = make_tasks(source)
    names = [t.name for t in all_tasks]
    keep = names if tasks is None else list(tasks)
    if not keep or any(name not in names for name in keep) or names[0] not in keep:
        raise ValueError(
            f"Invalid value for `tasks`. Expected {names[0]!r}, optionally with 'domain'. Received: tasks={keep!r}"
        )
    if source == "synthetic":
        parts = generate_moons(num_train, num_test, seed)
    else:
        parts = load_fashion_domains(num_train, num_test, shift, seed)
    half = batch_size // 2
    train = _training_dataset(parts[0], half, seed, keep)
    # Validation: source labels only (no target labels choose settings); test: target labels only.
    val = _labelled_dataset(parts[1], "source", keep).batch(batch_size)
    test = _labelled_dataset(parts[2], "target", keep).batch(batch_size)
    steps = int(train.cardinality().numpy())
    settings = {"input_shape": tuple(parts[0].x_source.shape[1:]), "schedule_steps": steps * epochs,
                "tasks": [t for t in all_tasks if t.name in keep]}
    datasets = [ds.prefetch(tf.data.AUTOTUNE) for ds in (train, val, test)]
    return DomainData(*datasets, tasks=settings["tasks"], model_settings=settings, parts=parts)


def _labels(main, domain, keep):
    return {name: value for name, value in ((keep[0], main), ("domain", domain)) if name in keep}


def _training_dataset(part: Domains, half: int, seed: int, keep):
    """Batches of `half` source examples (labelled) followed by `half` target examples (main label missing)."""
    import tensorflow as tf

    source = tf.data.Dataset.from_tensor_slices((part.x_source, part.y_source))
    target = tf.data.Dataset.from_tensor_slices(part.x_target)
    source = source.shuffle(len(part.y_source), seed=seed, reshuffle_each_iteration=True).batch(half)
    target = target.shuffle(len(part.y_target), seed=seed + 1, reshuffle_each_iteration=True).batch(half)
    if len(part.y_target) < len(part.y_source):  # every source batch gets target examples
        target = target.repeat()

    def join(source_batch, x_target):
        x_source, y_source = source_batch
        n_source, n_target = tf.shape(y_source)[0], tf.shape(x_target)[0]
        main = tf.concat([y_source, tf.fill([n_target], MISSING)], axis=0)
        domain = tf.concat([tf.zeros([n_source], "int32"), tf.ones([n_target], "int32")], axis=0)
        return tf.concat([x_source, x_target], axis=0), _labels(main, domain, keep)

    return tf.data.Dataset.zip((source, target)).map(join)


def _labelled_dataset(part: Domains, labelled: str, keep):
    """Both domains' examples; the main-task labels of the `labelled` domain only (the other's are missing)."""
    import tensorflow as tf

    n_source, n_target = len(part.y_source), len(part.y_target)
    main = np.concatenate([
        part.y_source if labelled == "source" else np.full(n_source, MISSING, "int32"),
        part.y_target if labelled == "target" else np.full(n_target, MISSING, "int32"),
    ])
    domain = np.concatenate([np.zeros(n_source, "int32"), np.ones(n_target, "int32")])
    x = np.concatenate([part.x_source, part.x_target])
    return tf.data.Dataset.from_tensor_slices((x, _labels(main, domain, keep)))
