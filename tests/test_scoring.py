"""One metric-direction table and one multi-task score, shared by evaluation, selection and tuning."""

import keras
import pytest

import kmtl
from kmtl.evaluation import deltas, scoring, selection
from kmtl.evaluation.scoring import metric_direction, multitask_score
from kmtl.tuning import objective


def test_every_layer_reads_the_one_table():
    assert objective.metric_direction is scoring.metric_direction
    assert deltas.lower_is_better is scoring.lower_is_better
    assert selection.lower_is_better is scoring.lower_is_better


@pytest.mark.parametrize(
    "metric, direction",
    [("accuracy", "max"), ("top_2_accuracy", "max"), ("auroc_ovr", "max"), ("f1_macro", "max"),
     ("precision_micro", "max"), ("val_dice", "max"), ("mae", "min"), ("val_nme", "min"), ("logcosh", "min"),
     ("a_loss", "min"), ("mean_absolute_percentage_error", "min")],
)
def test_metric_directions(metric, direction):
    assert metric_direction(metric) == direction


def test_an_unknown_metric_says_how_to_give_its_direction():
    with pytest.raises(ValueError, match=r"Cannot tell whether metric 'pr' .*Received: metric='pr'"):
        metric_direction("pr")


def test_multitask_score_by_hand():
    directions = {"a": "max", "r": "min"}
    assert multitask_score({"a": 0.6, "r": 2.5}, directions, weights={"a": 3.0}) == pytest.approx(
        (3 * 0.6 + 1 / 3.5) / 4)
    # With baselines the score is 1 + Δm.
    assert multitask_score({"a": 0.88, "r": 1.8}, directions, baselines={"a": 0.8, "r": 2.0}) == pytest.approx(1.1)


def test_checkpoint_and_tuning_objective_log_the_same_val_mtl_score(tmp_path):
    """Both mean the weighted skill over the same references by `val_mtl_score`."""
    x = keras.Input((3,), name="x")
    tasks = [kmtl.Task("a", "binary"), kmtl.Task("r", "regression")]
    model = kmtl.builders.hard_sharing(x, keras.layers.Dense(2, name="shared")(x), tasks)
    model.compile(optimizer="sgd")
    logs_for = lambda auc, mae: {"val_a_auc": auc, "val_r_mae": mae, "a_auc": auc, "r_mae": mae}  # noqa: E731
    references = {"a": 0.5, "r": 4.0}
    checkpoint = selection.MultiTaskCheckpoint(tmp_path / "best.keras", references=references,
                                               weights={"a": 3.0, "r": 1.0})
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    tuning = objective.MultiTaskObjective.from_tasks(tasks, weights={"a": 3.0, "r": 1.0}, references=references)
    for epoch, (auc, mae) in enumerate([(0.5, 2.0), (0.6, 2.5)]):
        from_checkpoint, from_tuning = logs_for(auc, mae), logs_for(auc, mae)
        checkpoint.on_epoch_end(epoch, from_checkpoint)
        tuning.callback().on_epoch_end(epoch, from_tuning)
        assert from_checkpoint["val_mtl_score"] == pytest.approx(from_tuning["val_mtl_score"], abs=1e-12)
        assert from_tuning["val_mtl_score"] == pytest.approx((3 * (2 * auc - 1) + 1 - mae / 4.0) / 4)
