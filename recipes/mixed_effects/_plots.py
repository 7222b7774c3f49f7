"""A picture of the fitted mixed model: each subject's line, the population line and the test reaction times."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kmtl.recipes.mixed_effects._data import NUM_DAYS


def save_subject_lines(model, dataset, directory: str | Path, max_subjects: int = 20) -> Path:
    """Writes `subject_lines.png`: one panel per test subject (at most `max_subjects`), its test reaction times as
    dots, the model's reaction-time line over days 0-9 (fixed plus the subject's effects) and the population line
    (fixed effects only, an unseen subject's prediction).

    Args:
        model: a trained recipe model.
        dataset: batched `tf.data.Dataset` of `({"subject", "days"}, {"reaction", ...})` (the test split).
        directory: folder of the PNG.
        max_subjects: int. Panels at most.

    Returns:
        The PNG's path.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError('Saving plots needs matplotlib: `pip install "kmtl[plots]"`.') from error
    subjects, days, reaction = [], [], []
    for x, y in dataset:
        subjects.append(np.asarray(x["subject"]).reshape(-1))
        days.append(np.asarray(x["days"]).reshape(-1))
        reaction.append(np.asarray(y["reaction"]).reshape(-1))
    subjects, days, reaction = (np.concatenate(v) for v in (subjects, days, reaction))
    shown = np.unique(subjects)[:max_subjects]
    grid = np.arange(NUM_DAYS, dtype="float32")
    # One request for every subject's line and the population line (subject -1: no random effect).
    ids = np.concatenate([np.repeat(shown, NUM_DAYS), np.full(NUM_DAYS, -1)]).astype("int32")
    lines = model({"subject": ids, "days": np.tile(grid, len(shown) + 1)[:, None]}, training=False)["reaction"]
    lines = np.asarray(lines).reshape(len(shown) + 1, NUM_DAYS)
    columns = min(5, len(shown))
    rows = -(-len(shown) // columns)
    figure = Figure(figsize=(2.2 * columns, 1.9 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax, subject, line in zip(axes.ravel(), shown, lines):
        ax.plot(grid, lines[-1], color="grey", linestyle="--", linewidth=1)
        ax.plot(grid, line, color="tab:blue", linewidth=1.5)
        mine = subjects == subject
        ax.plot(days[mine], reaction[mine], "o", color="black", markersize=3)
        ax.set_title(f"subject {subject}", fontsize=8)
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    figure.supxlabel("days (dots: test reaction times; dashed: fixed effects only)", fontsize=8)
    figure.supylabel("reaction time (ms)", fontsize=8)
    path = Path(directory) / "subject_lines.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path
