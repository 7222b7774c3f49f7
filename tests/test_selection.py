"""`MultiTaskCheckpoint`: keeps the best model by Δm, by skill over trivial predictors (tests/test_primary_skill.py)
or by the scaled mean of task metrics."""

import os

import keras
import numpy as np
import pytest
from tiny import tiny_model

import kmtl
from kmtl.evaluation.selection import MultiTaskCheckpoint


def _model():
    tasks = [kmtl.Task("a", "binary"), kmtl.Task("r", "regression"), kmtl.Task("d", "binary", auxiliary=True)]
    return tiny_model(tasks=tasks, input_dim=3, trunk_units=4, activation="relu", head_units=(),
                      optimizer=keras.optimizers.Adam(0.05), run_eagerly=True)


@pytest.fixture(scope="module")
def model():
    return _model()


def _epoch(checkpoint, epoch, auc, mae, model):
    """Feeds one epoch's logs; moves the model's weights so that each save is distinguishable."""
    model.get_layer("trunk").kernel.assign(np.full((3, 4), float(epoch), "float32"))
    logs = {"val_a_auc": auc, "val_r_mae": mae, "val_d_auc": 0.5, "val_a_loss": 0.6, "val_r_loss": 1.0}
    checkpoint.on_epoch_end(epoch, logs)
    return logs


def _saved_kernel(path):
    return keras.saving.load_model(path, compile=False).get_layer("trunk").kernel.numpy()[0, 0]


def test_saves_only_when_delta_m_improves(tmp_path, model):
    path = tmp_path / "best.keras"
    checkpoint = MultiTaskCheckpoint(path, baselines={"a": 0.8, "r": 2.0}, metrics={"a": "auc", "r": "mae"})
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    logs = _epoch(checkpoint, 0, auc=0.76, mae=2.2, model=model)
    # Δm = ((0.76 - 0.8) / 0.8 - (2.2 - 2.0) / 2.0) / 2 = (-0.05 - 0.1) / 2; val_mtl_score = 1 + Δm
    assert logs["val_delta_m"] == pytest.approx(-0.075) and logs["val_mtl_score"] == pytest.approx(0.925)
    assert _saved_kernel(path) == 0.0
    first = (path.stat().st_mtime_ns, path.read_bytes())
    logs = _epoch(checkpoint, 1, auc=0.72, mae=2.2, model=model)  # worse: no save
    assert logs["val_delta_m"] == pytest.approx((-0.1 - 0.1) / 2)
    assert (path.stat().st_mtime_ns, path.read_bytes()) == first
    logs = _epoch(checkpoint, 2, auc=0.88, mae=1.8, model=model)  # better on both
    assert logs["val_delta_m"] == pytest.approx((0.1 + 0.1) / 2)
    assert _saved_kernel(path) == 2.0
    assert checkpoint.best_epoch == 2 and checkpoint.best_score == pytest.approx(0.1)
    assert checkpoint.scores == pytest.approx([-0.075, -0.1, 0.1])
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]  # no temporary file left behind


def test_weighted_mean_of_scaled_metrics(tmp_path, model):
    """Without references: a metric to maximise as is, an error e as 1 / (1 + e / scale), as val_mtl_scaled_score
    (the earlier val_mtl_score, which now means the skill only)."""
    path = tmp_path / "best.keras"
    checkpoint = MultiTaskCheckpoint(path, weights={"a": 3.0, "r": 1.0}, scales={"r": 2.0})
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    # Defaults: `auc` for the binary task, `mae` for the regression task (lower is better).
    logs = _epoch(checkpoint, 0, auc=0.5, mae=2.0, model=model)
    assert logs["val_mtl_scaled_score"] == pytest.approx((3 * 0.5 + 0.5) / 4) and "val_mtl_score" not in logs
    logs = _epoch(checkpoint, 1, auc=0.6, mae=2.5, model=model)
    assert logs["val_mtl_scaled_score"] == pytest.approx((3 * 0.6 + 1 / (1 + 2.5 / 2)) / 4)
    assert _saved_kernel(path) == 1.0
    logs = _epoch(checkpoint, 2, auc=0.6, mae=4.0, model=model)  # worse: the file keeps epoch 1
    assert logs["val_mtl_scaled_score"] == pytest.approx((3 * 0.6 + 1 / 3) / 4)
    assert _saved_kernel(path) == 1.0 and checkpoint.best_epoch == 1


def test_refuses_an_existing_file_unless_overwrite(tmp_path, model):
    path = tmp_path / "mine.keras"
    path.write_bytes(b"user's model")
    with pytest.raises(FileExistsError, match="mine.keras"):
        MultiTaskCheckpoint(path)
    checkpoint = MultiTaskCheckpoint(tmp_path / "later.keras")
    (tmp_path / "later.keras").write_bytes(b"appeared meanwhile")
    checkpoint.set_model(model)
    with pytest.raises(FileExistsError, match="later.keras"):
        checkpoint.on_train_begin()
    assert path.read_bytes() == b"user's model"
    checkpoint = MultiTaskCheckpoint(path, overwrite=True)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    _epoch(checkpoint, 0, auc=0.7, mae=1.0, model=model)
    assert path.read_bytes() != b"user's model"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"filepath": "best.h5"}, "ending in .keras"),
        ({"baselines": {"a": 0.8}}, "need the metric they measure"),
        ({"baselines": {"a": 0.0}, "metrics": {"a": "auc"}}, "finite non-zero"),
        ({"weights": {"a": -1.0}}, "values >= 0"),
        ({"metrics": {"a": 3}}, r"metrics\['a'\]=3"),
        ({"scales": {"r": 0.0}}, r"scales=\{'r': 0.0\}"),
        ({"metrics": {"a": "pr"}}, r"Cannot tell whether metric 'pr'"),
        ({"train_data": ([0.0], {"a": [1]})}, "needs `validation_data`"),
        ({"validation_data": ([0.0], {"a": [1]})}, "pass `train_data` too"),
        ({"references": {"a": 0.5}, "baselines": {"a": 0.8}, "metrics": {"a": "auc"}}, "at most one of"),
        ({"references": {"a": float("nan")}}, "finite number for task 'a'"),
        ({"train_data": iter([]), "validation_data": ([0.0], {"a": [1]})}, "an iterator would be used up"),
    ],
)
def test_bad_arguments(kwargs, fragment, tmp_path):
    kwargs = {"filepath": tmp_path / "x.keras", **kwargs}
    with pytest.raises(ValueError, match=fragment):
        MultiTaskCheckpoint(**kwargs)


@pytest.mark.slow  # trains for several epochs: 5-7 s
def test_fit_logs_the_score_and_keeps_the_best_epochs_model(tmp_path):
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("int32"), "r": x[:, :1], "d": (x[:, 1] > 0).astype("int32")}
    predictions = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: predictions.append(model(x)["r"].numpy()))
    checkpoint = MultiTaskCheckpoint(tmp_path / "best.keras", baselines={"r": 1.0}, metrics={"r": "mae"})
    history = model.fit(x, y, validation_data=(x, y), epochs=3, batch_size=8, verbose=0,
                        callbacks=[checkpoint, record])
    scores = history.history["val_delta_m"]
    expected = [1.0 - mae for mae in history.history["val_r_mae"]]  # -(mae - 1) / 1
    assert scores == pytest.approx(expected)
    best = int(np.argmax(scores))
    assert checkpoint.best_epoch == best
    loaded = keras.saving.load_model(tmp_path / "best.keras")
    np.testing.assert_allclose(loaded(x)["r"].numpy(), predictions[best], atol=1e-5)
    # A second fit with the same callback may replace its own file.
    model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=8, verbose=0, callbacks=[checkpoint])


def test_missing_validation_metric_names_the_task(tmp_path, model):
    checkpoint = MultiTaskCheckpoint(tmp_path / "best.keras", metrics={"r": "rmse"}, weights={"r": 1.0})
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    with pytest.raises(ValueError, match="task 'r' needs `val_r_rmse`"):
        checkpoint.on_epoch_end(0, {"val_r_mae": 1.0})
    assert not os.path.exists(tmp_path / "best.keras")


def test_a_file_appearing_during_training_is_never_replaced(tmp_path, model):
    path = tmp_path / "best.keras"
    checkpoint = MultiTaskCheckpoint(path, metrics={"r": "mae"}, weights={"r": 1.0})
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    path.write_bytes(b"another run's model")
    with pytest.raises(FileExistsError, match="best.keras"):
        _epoch(checkpoint, 0, auc=0.7, mae=1.0, model=model)
    assert path.read_bytes() == b"another run's model"
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]
