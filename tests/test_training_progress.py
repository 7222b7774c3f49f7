"""`TaskProgbarLogger`: a progress line that fits the terminal; History keeps every value."""

import re

import keras
import numpy as np
import pytest
from tiny import tiny_model

import kmtl
from kmtl.training import TaskProgbarLogger

TASKS = [kmtl.Task(f"task_{i}", "binary") for i in range(6)] + [kmtl.Task("age", "regression", metrics=["mae"]),
                                                                   kmtl.Task("age_group", "multiclass", num_classes=3)]


def _model():
    return tiny_model("uncertainty", tasks=TASKS, trunk_units=4, activation=None, head_units=(), seed=None,
                      optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)


def _data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {t.name: (x[:, 0] > 0).astype("int32") for t in TASKS[:6]}
    y["age"] = x[:, 1:2] * 10
    y["age_group"] = rng.integers(0, 3, size=n).astype("int32")
    return x, y


def test_compact_shows_loss_then_one_figure_per_task_within_the_width():
    logs = {"loss": 1.0, "age_loss": 0.5, "age_mae": 2.0, "age_weight": 1.0, "age_group_loss": 0.4,
            "age_group_accuracy": 0.3, "val_loss": 1.1, "val_age_mae": 2.5, "val_age_group_accuracy": 0.2}
    wide = TaskProgbarLogger(width=200)
    # "age_group_accuracy" belongs to age_group, not to age.
    assert wide.compact(logs, ["age", "age_group"]) == {"loss": 1.0, "age_mae": 2.0, "age_group_accuracy": 0.3}
    assert list(wide.compact(logs, ["age", "age_group"], validation=True)) == [
        "loss", "val_loss", "age_mae", "val_age_mae", "age_group_accuracy", "val_age_group_accuracy"]
    # 45 columns for the bar, then " - name: 0.1234" (name + 11) per value: 45 + 15 + 18 = 78 <= 80 < 78 + 29.
    assert list(TaskProgbarLogger(width=80).compact(logs, ["age", "age_group"])) == ["loss", "age_mae"]
    assert list(TaskProgbarLogger(width=10).compact(logs, ["age"])) == ["loss"]  # the loss always shows


@pytest.mark.parametrize("width", [0, -3, 2.5, True])
def test_bad_width(width):
    with pytest.raises(ValueError, match=f"Received: width={width!r}"):
        TaskProgbarLogger(width=width)


def test_fit_prints_lines_that_fit_and_history_keeps_every_value(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    x, y = _data()
    history = _model().fit(x, y, validation_data=_data(16), batch_size=16, epochs=2, verbose=1)
    out = capsys.readouterr().out
    lines = [re.sub(r"\x1b\[[0-9;]*m|\x08", "", line) for line in re.split(r"[\r\n]", out)]
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    train_keys = [k for k in history.history if not k.startswith("val_")]
    assert f"Showing 2 of {len(train_keys)} values; History, TensorBoard and the report hold all." in out
    assert "- loss: " in out and "- task_0_accuracy: " in out and "- task_5_accuracy: " not in out
    # Every task's loss, weight and metrics, and their validation twins, are in History.
    assert {f"{t.name}_{m}" for t in TASKS for m in ("loss", "weight")} <= set(train_keys)
    assert {"age_mae", "age_group_accuracy"} <= set(train_keys)
    assert sorted(history.history) == sorted(train_keys + [f"val_{k}" for k in train_keys])


def test_a_given_progress_bar_is_kept_and_verbose_0_prints_nothing(capsys):
    x, y = _data(16)
    model = _model()

    class Plain(keras.callbacks.ProgbarLogger):
        pass

    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=1, verbose=1, callbacks=[Plain()])  # Keras's own bar: every value, as asked
    assert "task_5_accuracy" in capsys.readouterr().out
