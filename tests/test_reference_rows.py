"""Reference predictors on training data that repeats its rows within an epoch, and on short fixed windows."""

import numpy as np
import pytest
import tensorflow as tf

from kmtl import Task
from kmtl.evaluation.classical import classical_scores
from kmtl.evaluation.references import distinct_examples
from kmtl.evaluation.trivial import trivial_scores

TASKS = [Task("r", "regression"), Task("b", "binary")]


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = {"r": (2 * x[:, :1] + rng.normal(size=(n, 1))).astype("float32"), "b": (x[:, 1] > 0.3).astype("float32")}
    return x, y


def _repeated(x, y, passes, batch_size=150):
    """As the mixed-effects and forecasting recipes build their training split: shuffled again each pass."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=1, reshuffle_each_iteration=True)
    return ds.batch(batch_size).repeat(passes)


def test_references_fit_on_the_distinct_rows_of_a_repeated_training_split():
    x, y = _rows(300, 0)
    test = _rows(200, 1)
    once = classical_scores(TASKS, (x, y), test)
    repeated = classical_scores(TASKS, _repeated(x, y, passes=8), test)  # 2,400 rows: 300 rows 8 times
    for task in ("r", "b"):
        assert "fitted on 300 of 300 distinct labelled training examples" in repeated[task].detail
        assert "repeats its 300 examples, 2400 rows read" in repeated[task].detail
        assert "distinct" not in once[task].detail
    assert repeated["r"].scores["mae"] == pytest.approx(once["r"].scores["mae"], rel=1e-9)  # the same 300 rows
    trivial_once, trivial_repeated = trivial_scores(TASKS, (x, y), test), trivial_scores(TASKS, _repeated(x, y, 8), test)
    assert trivial_repeated["r"].scores == trivial_once["r"].scores  # the median of the 300, not of 2,400 reads


def test_equal_examples_in_real_data_are_kept():
    x, y = _rows(50, 2)
    pick = np.random.default_rng(3).integers(0, 50, size=80)  # equal rows scattered: data, not passes
    examples = distinct_examples(x[pick], {k: v[pick] for k, v in y.items()})
    assert len(examples) == 80 and examples.passes == 1
    examples = distinct_examples(np.concatenate([x, x[:10]]), {k: np.concatenate([v, v[:10]]) for k, v in y.items()})
    assert len(examples) == 60  # one pass and a bit: not two whole passes


def test_short_fixed_windows_are_flattened_and_long_or_padded_sequences_pooled():
    rng = np.random.default_rng(4)
    # A forecast from a window of 4 steps x 3 series: the target is the last step's first series, which the mean
    # over steps blurs and flattening keeps.
    windows = rng.normal(size=(400, 4, 3)).astype("float32")
    target = {"next": windows[:, -1, :1] - 0.5 * windows[:, 0, :1]}
    task = [Task("next", "regression")]
    score = classical_scores(task, ({"history": windows[:300]}, {"next": target["next"][:300]}),
                             ({"history": windows[300:]}, {"next": target["next"][300:]}))["next"]
    assert "history flattened (4 steps x 3 values, a fixed window)" in score.detail
    assert score.scores["mae"] < 0.01  # linear in the flattened window
    # A long sequence (over 256 values) and a padded (variable-length) one are averaged over their steps.
    long = rng.normal(size=(60, 100, 3)).astype("float32")
    padded = windows[:60].copy()
    padded[::2, 3:] = 0.0  # every other sequence one step shorter: padding
    for sequences, why in ((long, "100 steps, over 256 values"), (padded, "variable length: padded steps")):
        data = ({"history": sequences}, {"next": target["next"][:60]})
        detail = classical_scores(task, data, data)["next"].detail
        assert f"history mean over steps ({why})" in detail, detail
