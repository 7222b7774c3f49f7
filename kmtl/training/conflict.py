"""Gradient conflict over training: are the tasks helping or fighting each other on the shared layers?"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kmtl._files import write_file
from kmtl.model.gradients import per_task_gradients


class GradientConflictMonitor(keras.callbacks.Callback):
    """Measures the pairwise cosine similarity of task gradients on the shared variables during training.

    At the end of every `every`-th epoch (and once before training) the monitor computes each task's gradient of
    the shared trainable variables on a fixed probe batch, in inference mode, and records the matrix of cosine
    similarities. A negative entry means two tasks pull the shared layers in opposing directions (conflict), a
    positive one that they agree. Each pair's value goes into the epoch logs as `gradcos_<task>_<task>` (so
    `history.history` and a `keras.callbacks.TensorBoard` listed *after* this callback record it), along with
    `gradcos_min`, the most conflicting pair's value.

    Args:
        data: the probe batch, `(inputs, {task: labels})`, or a `tf.data.Dataset` whose first `num_batches`
            batches are used (their gradients summed).
        every: int. Measure every `every` epochs.
        num_batches: int. Batches of a dataset to use.
        log_pairs: bool. Put every pair's value into the logs (set False for many tasks; the matrices are kept
            in `matrices` either way).

    Attributes:
        epochs: list of int, the epochs measured (-1 = before training).
        matrices: list of `(num_tasks, num_tasks)` arrays, one per measured epoch.

    Example:

    >>> monitor = kmtl.training.GradientConflictMonitor((x_probe, y_probe))  # doctest: +SKIP
    >>> model.fit(x, y, epochs=5, callbacks=[monitor])  # doctest: +SKIP
    >>> monitor.save_plot("conflict.png")  # doctest: +SKIP

    Reference:
        Yu et al. (2020). Gradient Surgery for Multi-Task Learning. NeurIPS (conflict as negative cosine).
    """

    def __init__(self, data, every: int = 1, num_batches: int = 1, log_pairs: bool = True):
        super().__init__()
        if int(every) < 1:
            raise ValueError(f"Invalid value for `every`. Expected a positive int. Received: every={every}")
        if int(num_batches) < 1:
            raise ValueError(f"Invalid value for `num_batches`. Expected a positive int. Received: num_batches={num_batches}")
        self.every = int(every)
        self.num_batches = int(num_batches)
        self.log_pairs = bool(log_pairs)
        self._batches = _probe_batches(data, self.num_batches)
        self._function = None
        self.epochs: list[int] = []
        self.matrices: list[np.ndarray] = []

    def on_train_begin(self, logs=None):
        if not self.model.shared_variables:
            raise ValueError("GradientConflictMonitor needs shared variables; this model's tasks share none.")
        self._measure(-1)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        matrix = self._measure(epoch)
        if logs is not None:
            names = self.model.task_names
            if self.log_pairs:
                for i in range(len(names)):
                    for j in range(i + 1, len(names)):
                        logs[f"gradcos_{names[i]}_{names[j]}"] = float(matrix[i, j])
            off_diagonal = matrix[~np.eye(len(names), dtype=bool)]
            logs["gradcos_min"] = float(off_diagonal.min()) if off_diagonal.size else 1.0

    def cosine_matrix(self) -> np.ndarray:
        """The cosine-similarity matrix of the task gradients on the probe data, now."""
        if self._function is None:
            self._function = tf.function(self._gradients)
        grads = None
        for x, y in self._batches:
            batch = self._function(x, y).numpy()
            grads = batch if grads is None else grads + batch
        norms = np.linalg.norm(grads, axis=1)
        unit = grads / np.where(norms > 0, norms, 1.0)[:, None]
        return unit @ unit.T

    def _gradients(self, x, y):
        model = self.model
        with tf.GradientTape(persistent=True) as tape:
            losses = model.task_losses(y, model(x, training=False))
            task_losses = [losses[i] for i in range(len(model.tasks))]
        return per_task_gradients(tape, task_losses, model.shared_variables)

    def _measure(self, epoch):
        matrix = self.cosine_matrix()
        self.epochs.append(int(epoch))
        self.matrices.append(matrix)
        return matrix

    def save_plot(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Saves a PNG: the latest cosine matrix as a heatmap, and every pair's cosine over the epochs.

        Needs matplotlib (`pip install "kmtl[plots]"`). The file is written whole under a temporary name, then
        renamed to `path` (a PNG at exactly that path, whatever its suffix); an existing file is never replaced
        unless `overwrite`.
        """
        if not self.matrices:
            raise ValueError("Nothing measured yet: use the monitor as a `fit` callback first.")
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"Refusing to overwrite existing file {path}; pass overwrite=True to replace it.")
        names = self.model.task_names
        figure = _figure(figsize=(11, 4.5))
        left, right = figure.subplots(1, 2)
        image = left.imshow(self.matrices[-1], vmin=-1, vmax=1, cmap="RdBu")
        left.set_xticks(range(len(names)), names, rotation=45, ha="right")
        left.set_yticks(range(len(names)), names)
        for i in range(len(names)):
            for j in range(len(names)):
                left.text(j, i, f"{self.matrices[-1][i, j]:.2f}", ha="center", va="center", fontsize=8)
        left.set_title(f"Gradient cosine similarity (epoch {self.epochs[-1] + 1})")
        figure.colorbar(image, ax=left, fraction=0.046)
        epochs = [e + 1 for e in self.epochs]
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                right.plot(epochs, [m[i, j] for m in self.matrices], marker="o", label=f"{names[i]} / {names[j]}")
        right.axhline(0.0, color="black", linewidth=0.8)
        right.set_xlabel("epoch (0 = before training)")
        right.set_ylabel("cosine similarity")
        right.set_title("Task gradient agreement over training")
        right.legend(fontsize=7)
        figure.tight_layout()
        return write_file(path, lambda temporary: _save_png(figure, temporary), overwrite=overwrite)


def _probe_batches(data, num_batches):
    if isinstance(data, tf.data.Dataset):
        batches = []
        for element in data.take(num_batches):
            x, y, _ = keras.utils.unpack_x_y_sample_weight(element)
            batches.append((x, y))
        if not batches:
            raise ValueError("GradientConflictMonitor got an empty dataset as `data`.")
        return batches
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return [tuple(data)]
    raise ValueError(
        "Invalid value for `data`. Expected `(inputs, {task: labels})` or a tf.data.Dataset of such pairs. "
        f"Received: {type(data).__name__}"
    )


def _save_png(figure, path):
    with open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)


def _figure(**kwargs):
    """A matplotlib `Figure` not tied to pyplot's global state (so no backend is switched)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('Plots need matplotlib: pip install "kmtl[plots]"') from error
    return Figure(**kwargs)
