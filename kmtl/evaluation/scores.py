"""Per-task scores from predictions over present labels, computed with scikit-learn."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import numpy as np

from kmtl.metrics.nme import NormalizedMeanError
from kmtl.tasks import Task

CLASSIFICATION_KINDS = ("binary", "multiclass", "multilabel")


@dataclass
class ConfusionMatrix:
    """Counts of (true class, predicted class) over a task's present labels.

    Attributes:
        matrix: numpy int array. Rows are true classes, columns predicted ones; `(c, c)` for binary and multiclass
            tasks, `(num_labels, 2, 2)` for multilabel tasks (one 2x2 matrix per label).
        classes: list of str. Names of the rows and columns.
        labels: list of str or None. Multilabel tasks: the name of each 2x2 matrix.
    """

    matrix: np.ndarray
    classes: list
    labels: list | None = None

    def __str__(self) -> str:
        blocks = [(None, self.matrix)] if self.labels is None else list(zip(self.labels, self.matrix))
        width = max([len(c) for c in self.classes] + [len(str(int(self.matrix.max(initial=0))))])
        lines = []
        for label, matrix in blocks:
            if label is not None:
                lines.append(f"[{label}]")
            lines.append("true \\ pred".ljust(12) + " ".join(c.rjust(width) for c in self.classes))
            for name, row in zip(self.classes, matrix):
                lines.append(name.ljust(12) + " ".join(str(int(v)).rjust(width) for v in row))
        return "\n".join(lines)


def present_entries(task: Task, labels: np.ndarray) -> np.ndarray:
    """Boolean array, True where a label entry is not the task's missing marker."""
    labels = np.asarray(labels)
    if task.missing_is_nan:
        return ~np.isnan(labels.astype(np.float64))
    return labels != task.missing


def reports_dice(task: Task) -> bool:
    """Whether a task's labels are masks scored with Dice: multilabel tasks, per-step binary tasks, and binary
    tasks that list a Dice metric."""
    if task.kind == "multilabel":
        return True
    if task.kind != "binary":
        return False
    named = any("dice" in (m if isinstance(m, str) else type(m).__name__).lower() for m in task.metrics)
    return bool(getattr(task, "per_step", False)) or named


def nme_metric(task: Task) -> NormalizedMeanError | None:
    """The task's `NormalizedMeanError` metric (or a default one for the name `"nme"`), if it lists one."""
    for metric in task.metrics:
        if isinstance(metric, NormalizedMeanError):
            return metric
        if metric == "nme":
            return NormalizedMeanError()
    return None


class TaskScorer:
    """Collects one task's labels and predictions batch by batch, then scores the present labels.

    Per-step labels `(batch, steps)` / `(batch, steps, k)` with predictions `(batch, steps, units)` are flattened
    to one row per step, so every metric sees present entries only.

    Args:
        task: `kmtl.Task`.
        threshold: float. Probability at or above which a binary or multilabel entry is predicted positive.
    """

    def __init__(self, task: Task, threshold: float = 0.5):
        self.task = task
        self.threshold = threshold
        self._labels, self._predictions, self._dice, self._nme = [], [], [], []

    def add(self, labels, predictions) -> None:
        """Adds one batch: labels with missing markers, predictions from the head."""
        task = self.task
        labels, predictions = np.asarray(labels), np.asarray(predictions, dtype=np.float64)
        width = task.output_units
        if task.kind in ("binary", "multiclass"):
            self._labels.append(labels.reshape(-1))
        else:
            self._labels.append(labels.reshape(-1, task.label_width))
        self._predictions.append(predictions.reshape(-1, width))
        if reports_dice(task):
            self._dice.append(_dice_per_example(task, labels, predictions, self.threshold))
        metric = nme_metric(task) if task.kind == "regression" else None
        if metric is not None:
            self._nme.append(_nme_per_row(task, metric, labels, predictions))

    def scores(self) -> dict:
        """`{metric: value}` over all present labels; NaN where a metric is undefined (e.g. AUROC of one class)."""
        task = self.task
        if not self._labels:
            return {}
        labels, predictions = np.concatenate(self._labels), np.concatenate(self._predictions)
        present = present_entries(task, labels)
        from sklearn.exceptions import UndefinedMetricWarning

        with warnings.catch_warnings():
            # Undefined values are reported as NaN or 0, as documented per metric.
            warnings.simplefilter("ignore", category=UndefinedMetricWarning)
            if task.kind == "binary":
                out = _binary_scores(labels[present], predictions[present, 0], self.threshold)
            elif task.kind == "multiclass":
                out = _multiclass_scores(labels[present].astype(int), predictions[present])
            elif task.kind == "multilabel":
                out = _multilabel_scores(labels, predictions, present, self.threshold)
            else:
                out = _regression_scores(labels[present].astype(np.float64), predictions[present])
        if self._dice:
            dice = np.concatenate(self._dice)
            out["dice"] = float(dice.mean()) if dice.size else float("nan")
        if self._nme:
            nme = np.concatenate(self._nme)
            out["nme"] = float(nme.mean()) if nme.size else float("nan")
        return out

    def confusion(self) -> ConfusionMatrix | None:
        """The confusion matrix of a classification task, None for regression."""
        from sklearn.metrics import confusion_matrix

        task = self.task
        if task.kind not in CLASSIFICATION_KINDS or not self._labels:
            return None
        labels, predictions = np.concatenate(self._labels), np.concatenate(self._predictions)
        present = present_entries(task, labels)
        if task.kind == "multilabel":
            names = task.label_names or [str(k) for k in range(task.num_labels)]
            matrices = []
            for k in range(task.num_labels):
                rows = present[:, k]
                truth, guess = _hard(labels[rows, k]), (predictions[rows, k] >= self.threshold).astype(int)
                matrices.append(confusion_matrix(truth, guess, labels=[0, 1]))
            return ConfusionMatrix(np.stack(matrices), ["0", "1"], names)
        if task.kind == "binary":
            truth = _hard(labels[present])
            guess = (predictions[present, 0] >= self.threshold).astype(int)
            classes = task.label_names or ["0", "1"]
            return ConfusionMatrix(confusion_matrix(truth, guess, labels=[0, 1]), list(classes))
        truth, guess = labels[present].astype(int), predictions[present].argmax(axis=-1)
        classes = task.label_names or [str(c) for c in range(task.num_classes)]
        return ConfusionMatrix(confusion_matrix(truth, guess, labels=list(range(task.num_classes))), list(classes))


def geometric_mean(values) -> float:
    """Geometric mean of non-negative values (0 if any is 0); NaN for no values."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        return float("nan")
    if (values <= 0).any():
        return 0.0
    return float(np.exp(np.mean(np.log(values))))


# --- Scores per kind ---------------------------------------------------------------------------------------------


def _binary_scores(truth, probability, threshold) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    if truth.size == 0:
        return {m: float("nan") for m in ("accuracy", "precision", "recall", "f1", "auroc")}
    truth = _hard(truth)
    guess = (probability >= threshold).astype(int)
    return {
        "accuracy": float(accuracy_score(truth, guess)),
        "precision": float(precision_score(truth, guess, zero_division=0)),
        "recall": float(recall_score(truth, guess, zero_division=0)),
        "f1": float(f1_score(truth, guess, zero_division=0)),
        "auroc": _auroc(truth, probability),
    }


def _multiclass_scores(truth, probabilities) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    names = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc_ovr")
    if truth.size == 0:
        return {m: float("nan") for m in names}
    guess = probabilities.argmax(axis=-1)
    # One-vs-rest AUROC per class, averaged over the classes that occur among the labels (and are not all of them).
    per_class = [_auroc((truth == c).astype(int), probabilities[:, c]) for c in range(probabilities.shape[1])]
    return {
        "accuracy": float(accuracy_score(truth, guess)),
        "precision_macro": float(precision_score(truth, guess, average="macro", zero_division=0)),
        "recall_macro": float(recall_score(truth, guess, average="macro", zero_division=0)),
        "f1_macro": float(f1_score(truth, guess, average="macro", zero_division=0)),
        "auroc_ovr": _nanmean(per_class),
    }


def _multilabel_scores(labels, probabilities, present, threshold) -> dict:
    # Micro: every present entry pooled. Macro: each label over its present entries, then the mean over labels.
    micro = _binary_scores(labels[present], probabilities[present], threshold)
    per_label = [
        _binary_scores(labels[present[:, k], k], probabilities[present[:, k], k], threshold)
        for k in range(labels.shape[1])
    ]
    out = {"accuracy": micro["accuracy"]}
    for name in ("precision", "recall", "f1", "auroc"):
        values = [scores[name] for scores in per_label]
        out[f"{name}_macro"] = _nanmean(values)  # labels without any present entry are left out
        out[f"{name}_micro"] = micro[name]
    return out


def _regression_scores(truth, prediction) -> dict:
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    if truth.size == 0:
        return {"mae": float("nan"), "rmse": float("nan")}
    return {
        "mae": float(mean_absolute_error(truth, prediction)),
        "rmse": float(np.sqrt(mean_squared_error(truth, prediction))),
    }


def _hard(labels) -> np.ndarray:
    """0/1 labels; soft binary labels (e.g. 0.7) count as positive from 0.5."""
    return (np.asarray(labels, dtype=np.float64) >= 0.5).astype(int)


def _auroc(truth, score) -> float:
    from sklearn.metrics import roc_auc_score

    if truth.size == 0 or truth.min() == truth.max():
        return float("nan")  # undefined with one class
    return float(roc_auc_score(truth, score))


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _dice_per_example(task, labels, predictions, threshold) -> np.ndarray:
    """Dice `2|P∩T| / (|P| + |T|)` of each example's mask over its present entries; 1 when both are empty."""
    batch = labels.shape[0]
    labels, predictions = labels.reshape(batch, -1), predictions.reshape(batch, -1)
    present = present_entries(task, labels)
    truth = np.where(present, np.asarray(labels, np.float64) >= 0.5, False).astype(np.float64)
    guess = np.where(present, predictions >= threshold, False).astype(np.float64)
    overlap, size = (truth * guess).sum(axis=1), truth.sum(axis=1) + guess.sum(axis=1)
    dice = np.where(size > 0, 2.0 * overlap / np.maximum(size, 1.0), 1.0)
    return dice[present.any(axis=1)]


def _nme_per_row(task, metric, labels, predictions) -> np.ndarray:
    """NME of each landmark vector whose entries are all present, as `kmtl.metrics.NormalizedMeanError` defines it."""
    labels = labels.reshape(-1, task.units).astype(np.float64)
    predictions = predictions.reshape(-1, task.units)
    keep = present_entries(task, labels).all(axis=1)
    truth = labels[keep].reshape(int(keep.sum()), -1, 2)
    guess = predictions[keep].reshape(int(keep.sum()), -1, 2)
    errors = np.linalg.norm(guess - truth, axis=-1).mean(axis=-1)
    ocular = np.linalg.norm(truth[:, metric.left_eye] - truth[:, metric.right_eye], axis=-1)
    return errors / np.maximum(ocular, keras.config.epsilon())  # the floor the Keras metric uses
