"""A picture of what the model does: inputs, true and predicted masks, class probabilities."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np


def save_prediction_grid(model, dataset, path: str | Path, num_images: int = 8) -> Path:
    """Writes a PNG grid: one column per image; rows input, true mask, predicted mask; class probabilities on top.

    Args:
        model: a trained model of this recipe (one per-pixel task, any image-level tasks).
        dataset: batched `tf.data.Dataset` of `({"image": x}, {task: labels})`; the first `num_images` are drawn.
        path: str or path of the PNG.
        num_images: int. Columns.

    Returns:
        The PNG's path.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError('Saving plots needs matplotlib: `pip install "kmtl[plots]"`.') from error
    images, labels = [], {}
    for x, y in dataset:
        images.append(np.asarray(x["image"]))
        for name, value in y.items():
            labels.setdefault(name, []).append(np.asarray(value))
        if sum(len(i) for i in images) >= num_images:
            break
    images = np.concatenate(images)[:num_images]
    labels = {name: np.concatenate(v)[:num_images] for name, v in labels.items()}
    predictions = model.predict({name: images for name in model.input} if isinstance(model.input, dict) else images,
                                verbose=0)
    masks = [t for t in model.tasks if t.per_pixel and not t.auxiliary]
    classes = [t for t in model.tasks if not t.per_pixel]
    rows = 1 + 2 * len(masks)
    # Each class task's title is two short lines (prediction, truth), wrapped to the column: long lines overlapped
    # their neighbours' in narrow columns.
    figure = Figure(figsize=(1.8 * len(images), 1.9 * rows + 0.3 * len(classes) * 2), layout="constrained")
    axes = figure.subplots(rows, len(images), squeeze=False)
    for j in range(len(images)):
        picture = images[j] if images.shape[-1] == 3 else images[j, ..., 0]
        axes[0, j].imshow(picture, cmap="gray", vmin=0, vmax=1)
        texts = [_class_text(t, labels, predictions, j, named=len(classes) > 1) for t in classes]
        axes[0, j].set_title("\n".join(text for text, _ in texts), fontsize=7,
                             color="black" if all(right is not False for _, right in texts) else "firebrick")
        for k, task in enumerate(masks):
            truth = labels[task.name][j].reshape(images.shape[1:3]).astype(float)
            truth[truth < 0] = np.nan  # unlabelled: blank
            axes[1 + 2 * k, j].imshow(truth, vmin=0, vmax=max(1, (task.num_classes or 2) - 1), cmap="viridis")
            axes[2 + 2 * k, j].imshow(_predicted_mask(task, predictions[task.name][j]), vmin=0, cmap="viridis",
                                      vmax=max(1, (task.num_classes or 2) - 1))
            if j == 0:
                axes[1 + 2 * k, j].set_ylabel(f"true {task.name}", fontsize=8)
                axes[2 + 2 * k, j].set_ylabel(f"predicted {task.name}", fontsize=8)
    single = f"\n(title: {classes[0].name})" if len(classes) == 1 else ""
    axes[0, 0].set_ylabel("input" + single, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


def _predicted_mask(task, prediction):
    if task.kind == "binary":
        return prediction[..., 0]  # the foreground probability
    return prediction.argmax(axis=-1)


def _class_text(task, labels, predictions, j, named: bool) -> tuple[str, bool | None]:
    """Two lines, `<predicted> <probability>` and `true <class>` (each prefixed by the task when `named`), wrapped to
    fit a column; and whether the prediction is right (None when the truth is unknown)."""
    probs = np.asarray(predictions[task.name][j]).reshape(-1)
    names = task.label_names or [str(c) for c in range(task.output_units if task.kind != "binary" else 2)]
    if task.kind == "binary":
        probs = np.array([1 - probs[0], probs[0]])
    true = labels.get(task.name)
    truth = "?" if true is None or int(np.asarray(true[j]).reshape(-1)[0]) < 0 else names[int(np.asarray(true[j]).reshape(-1)[0])]
    best = int(probs.argmax())
    prefix = f"{task.name}: " if named else ""
    lines = [f"{prefix}{names[best]} {probs[best]:.2f}", f"true {truth}"]
    text = "\n".join(textwrap.fill(line, width=22) for line in lines)
    return text, (None if truth == "?" else truth == names[best])
