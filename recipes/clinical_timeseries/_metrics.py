"""The clinical benchmark's metrics, computed with scikit-learn over real, labelled entries only."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from kmtl.data.clinical.benchmark_labels import los_bucket

# Mean remaining stay in hours of each length-of-stay bucket on MIMIC-III's training stays, as published with the
# benchmark: the hours a bucket prediction stands for when its mean absolute deviation is scored.
LOS_BUCKET_MEAN_HOURS = (11.45, 35.07, 59.21, 83.38, 107.49, 131.58, 155.64, 179.66, 254.31, 585.33)
HOURS_LABEL = "remaining_stay"


def benchmark_metrics(model, dataset) -> dict:
    """The benchmark's metrics of every main task, over real, labelled entries only (scikit-learn).

    - binary tasks (`mortality`, `decompensation`; pbcseq `death`, `transplant`): `auroc` and `auprc` (area under
      the precision-recall curve by the trapezoidal rule, as the benchmark reports it);
    - `length_of_stay` buckets: `kappa` (linearly weighted Cohen's kappa of the arg-max bucket) and, when the
      dataset also carries `remaining_stay` hours (`load_data(extra_labels=["remaining_stay"])`), `mad` (mean
      absolute deviation in hours of the predicted bucket's mean stay, `LOS_BUCKET_MEAN_HOURS`);
    - `remaining_stay` hours: `mad` and `kappa` of the hours' buckets;
    - multilabel (`phenotype`): `auroc_macro` (mean over labels with both classes present) and `auroc_micro`;
    - other multiclass tasks: `accuracy` and linear `kappa`; other regression tasks: `mad`.

    A per-step task is scored over every (episode, real step) with a label; a whole-stay task per episode with a
    label. A value that is undefined on the data (one class only) is NaN.

    Args:
        model: a `MultiTaskModel` from `build_model`.
        dataset: batches `({"features", "mask"}, {task: labels})`, e.g. `load_data(...).test`.

    Returns:
        dict `{task: {metric: float}}` of the model's non-auxiliary tasks, plus `"n"`, the number of scored
        entries.

    Example:

    >>> ct.benchmark_metrics(model, splits.test)["mortality"]  # doctest: +SKIP
    {'auroc': 0.83, 'auprc': 0.44, 'n': 512}
    """
    tasks = [t for t in model.tasks if not t.auxiliary]
    companions = {"length_of_stay": HOURS_LABEL} if any(t.name == "length_of_stay" for t in tasks) else {}
    entries = collect(model, dataset, tasks, companions)
    out = {}
    for task in tasks:
        y, p, hours = entries[task.name]
        if task.name == "length_of_stay":
            scores = bucket_scores(y, p, hours) if len(y) else {"kappa": float("nan")}
        elif task.name == HOURS_LABEL:
            scores = hours_scores(y, p) if len(y) else {"kappa": float("nan"), "mad": float("nan")}
        else:
            scores = generic_scores(task, y, p) if len(y) else {}
        out[task.name] = {**scores, "n": int(len(y))}
    return out


def binary_scores(y_true, y_score) -> dict:
    """AUROC and AUPRC (area under the precision-recall curve, trapezoidal, as the benchmark reports it)."""
    y_true, y_score = np.asarray(y_true).reshape(-1), np.asarray(y_score).reshape(-1)
    if np.unique(y_true).size < 2:
        return {"auroc": float("nan"), "auprc": float("nan")}
    precision, recall, _ = skm.precision_recall_curve(y_true, y_score)
    return {"auroc": float(skm.roc_auc_score(y_true, y_score)), "auprc": float(skm.auc(recall, precision))}


def multilabel_scores(y_true, y_score) -> dict:
    """Macro AUROC (mean over labels with both classes present) and micro AUROC (entries pooled)."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    both = [j for j in range(y_true.shape[1]) if np.unique(y_true[:, j]).size == 2]
    macro = skm.roc_auc_score(y_true[:, both], y_score[:, both], average="macro") if both else float("nan")
    micro = skm.roc_auc_score(y_true, y_score, average="micro") if np.unique(y_true).size == 2 else float("nan")
    return {"auroc_macro": float(macro), "auroc_micro": float(micro)}


def bucket_scores(true_bucket, probabilities, true_hours=None) -> dict:
    """Linearly weighted Cohen's kappa of the predicted (arg-max) bucket; with true hours, the mean absolute
    deviation of the predicted bucket's mean hours."""
    predicted = np.argmax(probabilities, axis=-1)
    out = {"kappa": float(skm.cohen_kappa_score(np.reshape(true_bucket, -1), predicted, weights="linear"))}
    if true_hours is not None:
        estimate = np.asarray(LOS_BUCKET_MEAN_HOURS)[predicted]
        out["mad"] = float(skm.mean_absolute_error(true_hours, estimate))
    return out


def hours_scores(true_hours, predicted_hours) -> dict:
    """Mean absolute deviation of remaining-stay hours, and the kappa of their buckets."""
    predicted_hours = np.maximum(np.asarray(predicted_hours).reshape(-1), 0.0)
    true_hours = np.asarray(true_hours).reshape(-1)
    kappa = skm.cohen_kappa_score(los_bucket(true_hours), los_bucket(predicted_hours), weights="linear")
    return {"kappa": float(kappa), "mad": float(skm.mean_absolute_error(true_hours, predicted_hours))}


def generic_scores(task, y_true, y_pred) -> dict:
    """Scores of a task by kind: binary AUROC/AUPRC, multiclass accuracy and linear kappa (ordered classes),
    multilabel macro/micro AUROC, regression mean absolute deviation."""
    if task.kind == "binary":
        return binary_scores(y_true, y_pred)
    if task.kind == "multilabel":
        return multilabel_scores(y_true, y_pred)
    if task.kind == "multiclass":
        y_true, predicted = np.reshape(y_true, -1), np.argmax(y_pred, axis=-1)
        return {
            "accuracy": float(skm.accuracy_score(y_true, predicted)),
            "kappa": float(skm.cohen_kappa_score(y_true, predicted, weights="linear")),
        }
    rows = (len(y_true), -1)
    return {"mad": float(skm.mean_absolute_error(np.reshape(y_true, rows), np.reshape(y_pred, rows)))}


def collect(model, dataset, tasks, companions=None) -> dict:
    """Runs the model over `dataset` and keeps each task's real, labelled entries.

    Args:
        model: a `MultiTaskModel` with `features` and `mask` inputs.
        dataset: batches `(inputs, labels)` as from `load_data`.
        tasks: the `kmtl.Task`s to score (outputs of the model).
        companions: dict `{task_name: label_name}` of further labels (no model output) read beside a task, at the
            same entries, e.g. `remaining_stay` hours beside the bucket task.

    Returns:
        `{task_name: (labels, predictions, companion labels or None)}`: a per-step task's entries over (episode,
        step) where the step is real and every label read is present; a whole-episode task's per episode where
        present (a multilabel row counts when all of its entries are present).
    """
    companions = dict(companions or {})
    kept = {t.name: ([], [], []) for t in tasks}
    for inputs, labels in dataset:
        predictions = model.predict_on_batch(inputs)
        real = np.asarray(inputs["mask"]) > 0
        for task in tasks:
            y, p = np.asarray(labels[task.name]), np.asarray(predictions[task.name])
            extra = companions.get(task.name)
            c = np.asarray(labels[extra]) if extra in labels else None
            if task.per_step:  # real steps only
                y, p, c = y[real], p[real], None if c is None else c[real]
            keep = _present(y, task.missing) if c is None else _present(y, task.missing) & _present(c)
            kept[task.name][0].append(y[keep])
            kept[task.name][1].append(p[keep])
            kept[task.name][2].append(None if c is None else c[keep])
    out = {}
    for name, (ys, ps, cs) in kept.items():
        if not ys:
            raise ValueError("Invalid value for `dataset`: it yielded no batch.")
        companion = None if cs[0] is None else np.concatenate(cs)
        out[name] = (np.concatenate(ys), np.concatenate(ps), companion)
    return out


def _present(y, missing=None) -> np.ndarray:
    """Rows whose every entry is present: not `missing` (default: NaN for float labels, -1 for integer ones)."""
    y = np.asarray(y)
    if missing is None:
        missing = float("nan") if np.issubdtype(y.dtype, np.floating) else -1
    y = y.astype("float64")
    absent = np.isnan(y) if np.isnan(missing) else y == missing
    return ~absent.reshape(len(y), -1).any(axis=1)
