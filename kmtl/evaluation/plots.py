"""PNG plots of an evaluation: confusion heatmaps, per-task learning curves and task weights over training.

Needs matplotlib, the optional extra `plots` (`pip install "kmtl[plots]"`). Figures are drawn with
`matplotlib.figure.Figure` directly, so no pyplot state or display backend is involved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kmtl._files import write_file


def save_plots(report, directory: str | Path, history: Any = None, *, overwrite: bool = False) -> list[Path]:
    """Writes an evaluation's plots as PNG files and returns their paths.

    Files, for each task of the report:

    - `confusion_<task>.png`: heatmap of the confusion matrix of a classification task, labelled by the task's
      `label_names` (multilabel: one 2x2 heatmap per label);
    - `learning_curves_<task>.png` (with `history`): the task's loss and each of its metrics per epoch, training
      and validation (`val_` entries);
    - `task_weights.png` (with `history` holding `<task>_weight` entries): each task's weight over training.

    No existing file is replaced: when any target exists the call writes nothing and raises, unless `overwrite`.
    Each file is written whole under a temporary name and then put in place, so a failure (a full disk) leaves
    no half-written plot and, with `overwrite`, the previous file as it was.

    Args:
        report: `kmtl.EvaluationReport`.
        directory: str or Path. Folder for the files (created if needed).
        history: `keras.callbacks.History` (as returned by `fit`) or its `history` dict; optional.
        overwrite: bool. Replace existing files of the same names.

    Returns:
        List of `Path`s written.

    Raises:
        ImportError: when matplotlib is not installed.
        FileExistsError: naming the existing files when `overwrite` is False.

    Example:

    >>> history = model.fit(train_ds, validation_data=val_ds, epochs=5)  # doctest: +SKIP
    >>> kmtl.evaluate(model, test_ds).save_plots("plots", history)  # doctest: +SKIP
    """
    figure_class = _figure_class()
    logs = _history_dict(history)
    directory = Path(directory)
    planned = {}
    for task in report.tasks:
        if task in report.confusion:
            planned[directory / f"confusion_{task}.png"] = (_draw_confusion, task, report.confusion[task])
    curves = _curves_by_task(report.tasks, logs)
    for task, metrics in curves.items():
        planned[directory / f"learning_curves_{task}.png"] = (_draw_curves, task, metrics)
    weights = {task: logs[f"{task}_weight"] for task in report.tasks if f"{task}_weight" in logs}
    if weights:
        planned[directory / "task_weights.png"] = (_draw_weights, None, weights)
    existing = [str(path) for path in planned if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"Refusing to overwrite existing plot file(s) {existing}; pass overwrite=True.")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for path, (draw, task, content) in planned.items():
        figure = figure_class(figsize=(6.4, 4.8), layout="constrained")
        draw(figure, task, content)
        # Written whole under a temporary name, then linked (or, with `overwrite`, renamed) into place: a file
        # appearing meanwhile is never replaced, and a failure never leaves a half-written or truncated plot.
        written.append(write_file(path, lambda temporary: _save_png(figure, temporary), overwrite=overwrite))
    return written


def _save_png(figure, path) -> None:
    with open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError('Plots need matplotlib, the optional extra `plots`: pip install "kmtl[plots]"') from error
    return Figure


def _history_dict(history: Any) -> dict:
    if history is None:
        return {}
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise ValueError(
            "Invalid value for `history`. Expected a keras.callbacks.History or its `history` dict. "
            f"Received: history={type(history).__name__}"
        )
    return logs


def _curves_by_task(tasks: list[str], logs: dict) -> dict:
    """`{task: {metric: {"train": values, "val": values}}}`; keys go to the longest matching task name."""
    by_length = sorted(tasks, key=len, reverse=True)
    curves = {}
    for key, values in logs.items():
        split, name = ("val", key[4:]) if key.startswith("val_") else ("train", key)
        owner = next((t for t in by_length if name.startswith(t + "_")), None)
        if owner is None or name == f"{owner}_weight":
            continue
        metric = name[len(owner) + 1:]
        curves.setdefault(owner, {}).setdefault(metric, {})[split] = list(values)
    return {t: curves[t] for t in tasks if t in curves}


def _draw_curves(figure, task: str, metrics: dict) -> None:
    names = sorted(metrics, key=lambda m: (m != "loss", m))
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure.set_size_inches(4.0 * columns, 3.0 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        for split, style in (("train", "-"), ("val", "--")):
            if split in metrics[name]:
                values = metrics[name][split]
                ax.plot(range(1, len(values) + 1), values, style, marker="o", label=split)
        ax.set_title(f"{task}: {name}")
        _epoch_axis(ax)
        ax.legend()
    for ax in axes[len(names):]:
        ax.set_visible(False)


def _draw_confusion(figure, task: str, confusion) -> None:
    matrices = confusion.matrix[None] if confusion.labels is None else confusion.matrix
    titles = [task] if confusion.labels is None else [f"{task}: {label}" for label in confusion.labels]
    columns = min(4, len(matrices))
    rows = -(-len(matrices) // columns)
    size = max(3.0, 0.5 * len(confusion.classes) + 1.5)
    figure.set_size_inches(size * columns, size * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, matrix, title in zip(axes, matrices, titles):
        ax.imshow(matrix, cmap="Blues")
        ticks = range(len(confusion.classes))
        ax.set_xticks(ticks, confusion.classes, rotation=45, ha="right")
        ax.set_yticks(ticks, confusion.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        high = matrix.max(initial=0)
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(int(count)), ha="center", va="center", color="white" if count > high / 2 else "black")
    for ax in axes[len(matrices):]:
        ax.set_visible(False)


def _draw_weights(figure, _, weights: dict) -> None:
    ax = figure.subplots()
    for task, values in weights.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=task)
    ax.set_title("task weights")
    _epoch_axis(ax)
    ax.set_ylabel("weight")
    ax.legend()


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
