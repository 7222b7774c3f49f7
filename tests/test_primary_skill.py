"""The tuner and the checkpoint score each task by its primary metric's skill over its trivial predictor.

The primary metric is the one `kmtl.evaluate`'s reference table judges a task by (AUROC for a binary task): scored
by accuracy, a rare outcome's skill stays near 0 whatever the model does, and the tuner would ignore the task.
"""

import keras
import numpy as np
import pytest
from tiny import tiny_model

import kmtl
from kmtl.evaluation.selection import MultiTaskCheckpoint
from kmtl.evaluation.trivial import logged_primary_metric
from kmtl.tuning.objective import MultiTaskObjective

TASKS = [kmtl.Task("died", "binary"), kmtl.Task("stay", "regression")]


@pytest.fixture(scope="module")
def splits():
    """5% deaths: the class prior's accuracy is 0.95."""
    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(size=(n, 3)).astype("float32")
    died = np.zeros(n, "float32")
    died[::20] = 1.0
    y = {"died": died, "stay": (50 + 10 * rng.normal(size=(n, 1))).astype("float32")}
    half = n // 2
    return (x[:half], {k: v[:half] for k, v in y.items()}), (x[half:], {k: v[half:] for k, v in y.items()})


@pytest.mark.parametrize(
    "task, metric",
    [
        (kmtl.Task("t", "binary"), "auc"),
        (kmtl.Task("t", "binary", metrics=["accuracy"]), "accuracy"),  # no AUC logged: the first metric
        (kmtl.Task("t", "multilabel", num_labels=3), "auc"),  # the pooled AUROC: no macro one is logged
        (kmtl.Task("t", "multilabel", num_labels=3, metrics=["auc", keras.metrics.AUC(multi_label=True,
                                                                                        name="macro_auc")]),
         "macro_auc"),
        (kmtl.Task("t", "multiclass", num_classes=3, metrics=["top_2_accuracy", "accuracy"]), "accuracy"),
        (kmtl.Task("t", "regression", metrics=["rmse", "mae"]), "mae"),
        (kmtl.Task("t", "regression", metrics=["rmse"]), "rmse"),
        (kmtl.Task("t", "regression", units=4, metrics=["mae", "nme"]), "nme"),
    ],
)
def test_logged_primary_metric_is_the_reports_measure(task, metric):
    assert logged_primary_metric(task) == metric


def test_an_imbalanced_task_counts_by_its_auroc(splits):
    train, val = splits
    by_accuracy = MultiTaskObjective({"died": "accuracy", "stay": "mae"})
    by_accuracy.fit_references(TASKS, train, val)
    primary = MultiTaskObjective.from_tasks(TASKS)
    assert primary.metrics == {"died": "auc", "stay": "mae"}
    primary.fit_references(TASKS, train, val)
    assert by_accuracy.references["died"] == pytest.approx(0.95)  # the majority class
    assert primary.references["died"] == pytest.approx(0.5)  # the prior ranks no one above another
    r_mae = primary.references["stay"]
    # Trial `learned` ranks deaths well (AUROC 0.9) but, as the prior, predicts no death at 0.5; `ignored` ranks
    # them at random and has a slightly smaller stay error.
    learned = {"val_died_auc": 0.9, "val_died_accuracy": 0.95, "val_stay_mae": 0.80 * r_mae}
    ignored = {"val_died_auc": 0.5, "val_died_accuracy": 0.95, "val_stay_mae": 0.75 * r_mae}
    assert by_accuracy.score(learned) < by_accuracy.score(ignored)  # the deaths do not count
    assert primary.score(learned) == pytest.approx((0.8 + 0.2) / 2)
    assert primary.score(ignored) == pytest.approx((0.0 + 0.25) / 2)


def _feed(checkpoint, epochs):
    scores = []
    for epoch, values in enumerate(epochs):
        logs = dict(values)
        checkpoint.on_epoch_end(epoch, logs)
        scores.append(logs)
    return scores


@pytest.fixture(scope="module")
def model():
    return tiny_model(tasks=TASKS, input_dim=3, trunk_units=2, head_units=())


@pytest.mark.parametrize("factor", [1.0, 1000.0])
def test_checkpoint_choice_is_invariant_to_the_units_of_a_regression_task(splits, model, tmp_path, factor):
    train, val = splits
    scaled = [(x, {**y, "stay": y["stay"] * factor}) for x, y in (train, val)]
    checkpoint = MultiTaskCheckpoint(tmp_path / "best.keras", train_data=scaled[0], validation_data=scaled[1])
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    r_mae = checkpoint.references["stay"]
    assert checkpoint.references["died"] == pytest.approx(0.5)
    assert r_mae == pytest.approx(factor * float(np.mean(np.abs(val[1]["stay"] - np.median(train[1]["stay"])))),
                                  rel=1e-5)
    # The same two epochs in the task's units: epoch 0 is better on deaths, epoch 1 a little on the stay's error.
    epochs = [{"val_died_auc": 0.70, "val_stay_mae": 0.50 * r_mae},
              {"val_died_auc": 0.72, "val_stay_mae": 0.80 * r_mae}]
    logs = _feed(checkpoint, epochs)
    assert [entry["val_mtl_score"] for entry in logs] == pytest.approx([(0.4 + 0.5) / 2, (0.44 + 0.2) / 2])
    assert checkpoint.best_epoch == 0 and checkpoint.score_name == "val_mtl_score"
    # The earlier, units-dependent score, still logged under its own name, chooses by the units.
    scaled_scores = [entry["val_mtl_scaled_score"] for entry in logs]
    assert int(np.argmax(scaled_scores)) == (1 if factor > 1 else 0)


@pytest.mark.slow
def test_checkpoint_fits_references_on_the_data_given(splits, tmp_path):
    """In `fit`: the references are the trivial predictors' values of the logged metrics on validation data, and
    `val_mtl_score` is the skill the tuning objective computes from the same logs."""
    train, val = splits
    model = tiny_model(tasks=TASKS, input_dim=3, trunk_units=2, head_units=(), run_eagerly=True)  # 4 steps: no tracing
    checkpoint = MultiTaskCheckpoint(tmp_path / "best.keras", train_data=train, validation_data=val)
    history = model.fit(*train, validation_data=val, epochs=2, batch_size=50, verbose=0, callbacks=[checkpoint])
    tuning = MultiTaskObjective.from_tasks(TASKS)
    tuning.fit_references(TASKS, train, val)
    assert checkpoint.references == pytest.approx(tuning.references, rel=1e-6)
    for epoch in range(2):
        logs = {k: v[epoch] for k, v in history.history.items()}
        assert logs["val_mtl_score"] == pytest.approx(tuning.score(logs), abs=1e-9)
    assert checkpoint.best_score == pytest.approx(max(history.history["val_mtl_score"]))


def test_checkpoint_refuses_an_endless_dataset(splits, tmp_path):
    import tensorflow as tf

    train, val = splits
    endless = tf.data.Dataset.from_tensor_slices(train).batch(50).repeat()
    with pytest.raises(ValueError, match="Invalid value for `train_data`.*endless dataset never ends"):
        MultiTaskCheckpoint(tmp_path / "best.keras", train_data=endless, validation_data=val)
