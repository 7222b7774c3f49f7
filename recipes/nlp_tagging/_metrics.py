"""Scores of tagged sentences: token accuracy per task, span precision/recall/F1 of BIO tasks through seqeval."""

from __future__ import annotations

import numpy as np


def predict_tags(model, dataset) -> tuple[dict, dict]:
    """Gold and predicted tag names per task, as lists of sentences (padding and missing gold tags left out)."""
    gold, predicted = {t.name: [] for t in model.tasks}, {t.name: [] for t in model.tasks}
    for inputs, labels in dataset:
        outputs = model.predict_on_batch(inputs)
        real = inputs["tokens"].numpy() != b""
        for task in model.tasks:
            names = np.asarray(task.label_names)
            ids = np.argmax(outputs[task.name], axis=-1)
            truth = labels[task.name].numpy()
            for row in range(len(ids)):
                keep = real[row] & (truth[row] >= 0)
                if keep.any():
                    gold[task.name].append(list(names[truth[row][keep]]))
                    predicted[task.name].append(list(names[ids[row][keep]]))
    return gold, predicted


def tag_scores(gold: dict, predicted: dict, span_tasks=()) -> dict:
    """`{task: {"token_accuracy": ..., and for BIO tasks "span_precision", "span_recall", "span_f1"}}`."""
    scores = {}
    for task, sentences in gold.items():
        flat_gold = [tag for sentence in sentences for tag in sentence]
        flat_predicted = [tag for sentence in predicted[task] for tag in sentence]
        result = {"token_accuracy": float(np.mean(np.array(flat_gold) == np.array(flat_predicted)))
                  if flat_gold else float("nan")}
        if task in span_tasks:
            result.update(span_scores(sentences, predicted[task]))
        scores[task] = result
    return scores


def span_scores(gold, predicted) -> dict:
    """Span precision, recall and F1 (exact spans, IOB2) from `seqeval` (`pip install 'kmtl[text]'`)."""
    try:
        from seqeval.metrics import f1_score, precision_score, recall_score
    except ImportError as error:
        raise ImportError("Span scores need `seqeval`: pip install 'kmtl[text]'") from error
    return {
        "span_precision": float(precision_score(gold, predicted, zero_division=0)),
        "span_recall": float(recall_score(gold, predicted, zero_division=0)),
        "span_f1": float(f1_score(gold, predicted, zero_division=0)),
    }


def format_scores(scores: dict, title: str = "") -> str:
    names = ["token_accuracy", "span_precision", "span_recall", "span_f1"]
    lines = [title] if title else []
    lines.append(f"{'task':10s}" + "".join(f"{n:>16s}" for n in names))
    for task, values in scores.items():
        lines.append(f"{task:10s}" + "".join(f"{values[n]:16.4f}" if n in values else f"{'-':>16s}" for n in names))
    return "\n".join(lines)
