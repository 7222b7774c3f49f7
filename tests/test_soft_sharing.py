"""Tests for kmtl.builders.soft_sharing."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl.builders.soft_sharing import soft_sharing
from kmtl.regularizers import GroupLasso, SoftSharingL2, TraceNorm

TASKS = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression"), kmtl.Task("c", "multiclass", num_classes=3)]
NAMES = [t.name for t in TASKS]


def make_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {
        "a": (x[:, 0] > 0).astype("int32"),
        "b": 2.0 * x[:, 1:2],
        "c": np.digitize(x[:, 2], [-0.5, 0.5]).astype("int32"),
    }
    return x, y


def make_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs = {"tower_units": (8, 4), **kwargs}
    return soft_sharing(keras.Input((6,), name="features"), TASKS, **kwargs)


def tower_kernels(model, depth):
    return np.stack([model.get_layer(f"tower_{t}_{depth}").kernel.numpy() for t in NAMES])


def test_outputs_layers_and_penalties():
    model = make_model(tower_units=(8, 4, 2), head_units=(3,), penalty="trace_norm", strength=0.5)
    assert sorted(model.output) == sorted(NAMES)
    assert isinstance(model, kmtl.MultiTaskModel)
    assert [type(p) for p in model.penalties] == [TraceNorm] * 3
    assert [p.layer_names for p in model.penalties] == [[f"tower_{t}_{i}" for t in NAMES] for i in (1, 2, 3)]
    assert {p.strength for p in model.penalties} == {0.5}
    assert model.get_layer("tower_c_3").units == 2
    assert model.get_layer("c_hidden_1").units == 3


def test_penalty_factory():
    model = make_model(penalty=functools.partial(GroupLasso, q="inf"))
    assert [type(p) for p in model.penalties] == [GroupLasso] * 2
    assert model.penalties[0].q == "inf"


def test_one_epoch_decreases_the_loss():
    model = make_model(strength=1e-2)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x, y = make_data()
    before = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)["loss"]
    assert after < before


@pytest.mark.slow  # trains and restores or runs two replicas: several seconds on 2 cores
@pytest.mark.parametrize("penalty", ["l2", "trace_norm"])
def test_keras_round_trip_restores_predictions_and_penalties(penalty, tmp_path):
    model = make_model(penalty=penalty, strength=0.1, dropout=0.1)
    model.compile(optimizer="adam")
    x, y = make_data(n=16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "soft.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected, actual = model.predict(x, verbose=0), restored.predict(x, verbose=0)
    for name in NAMES:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-6, err_msg=name)
    assert [p.get_config() for p in restored.penalties] == [p.get_config() for p in model.penalties]
    np.testing.assert_allclose(
        [float(p.penalty()) for p in restored.penalties], [float(p.penalty()) for p in model.penalties], rtol=1e-6
    )


def test_export_loads_with_tensorflow_only(tmp_path):
    model = make_model(penalty="trace_norm")
    x, _ = make_data(n=4)
    path = kmtl.export.for_serving(model, tmp_path / "soft", warmup=False)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    outputs = serve(features=tf.constant(x))
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(outputs["a"].numpy(), expected["a"][:, 0], atol=1e-6)
    np.testing.assert_allclose(outputs["c"].numpy(), expected["c"], atol=1e-6)


def test_each_tower_belongs_to_its_task_and_nothing_is_shared():
    model = make_model()
    assert model.shared_variables == []
    for name in NAMES:
        paths = {v.path for v in model.task_variables[name]}
        assert {f"tower_{name}_{i}/{w}" for i in (1, 2) for w in ("kernel", "bias")} <= paths
        assert all(p.startswith((f"tower_{name}_", f"{name}/")) for p in paths)


def test_shared_input_features_are_shared():
    keras.utils.set_random_seed(0)
    inputs = {"left": keras.Input((3,), name="left"), "right": keras.Input((2,), name="right")}
    joined = keras.layers.Concatenate(name="join")([inputs["left"], inputs["right"]])
    features = keras.layers.Dense(5, name="embed")(joined)
    model = soft_sharing(inputs, TASKS, tower_units=(4,), input_features=features)
    assert sorted(v.path for v in model.shared_variables) == ["embed/bias", "embed/kernel"]
    assert all(f"tower_{n}_1/kernel" in {v.path for v in model.task_variables[n]} for n in NAMES)


def train(penalty, strength):
    """32 SGD steps from the same initial weights. With l2 the towers' spread contracts by 1 - 2 * lr * strength
    per step (0.6 at strength 100); the trace norm's subgradient moves each singular value by lr * strength (0.2),
    so it ends within about 0.2 of zero instead of at ~2.6."""
    model = make_model(penalty=penalty, strength=strength)
    model.compile(optimizer=keras.optimizers.SGD(0.002))
    x, y = make_data()
    model.fit(x, y, batch_size=8, epochs=4, verbose=0)
    return model


def test_large_strength_pulls_the_towers_together():
    def spread(model, depth):
        kernels = tower_kernels(model, depth)
        return np.sqrt(np.sum((kernels - kernels.mean(axis=0)) ** 2))

    free, tied = train("l2", 0.0), train("l2", 100.0)
    for depth in (1, 2):
        assert spread(tied, depth) < spread(free, depth) / 10
    assert isinstance(tied.penalties[0], SoftSharingL2)


def test_large_trace_norm_strength_shrinks_the_stacked_towers():
    def trace_norm(model, depth):
        return np.linalg.svd(tower_kernels(model, depth).reshape(len(NAMES), -1), compute_uv=False).sum()

    free, tied = train("trace_norm", 0.0), train("trace_norm", 100.0)
    for depth in (1, 2):
        assert trace_norm(tied, depth) < trace_norm(free, depth) / 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tasks": TASKS[:1]}, "at least two tasks"),
        ({"tasks": []}, "Expected at least one Task"),
        ({"tower_units": ()}, "Invalid value for `tower_units`"),
        ({"tower_units": (8, 0)}, "Invalid value for `tower_units`.*tower_units=\\(8, 0\\)"),
        ({"tower_units": 8}, "Invalid value for `tower_units`"),
        ({"penalty": "l1"}, "Invalid value for `penalty`.*'l2', 'trace_norm'.*penalty='l1'"),
        ({"penalty": SoftSharingL2(["x"])}, "not a penalty instance"),
        ({"penalty": lambda names, strength: None}, "must make a kmtl.regularizers.Penalty"),
        ({"strength": -1.0}, "Invalid value for `strength`.*strength=-1.0"),
        ({"strength": "big"}, "Invalid value for `strength`"),
        ({"dropout": 1.0}, "Invalid value for `dropout`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    kwargs = {"tasks": TASKS, **kwargs}
    tasks = kwargs.pop("tasks")
    with pytest.raises(ValueError, match=match):
        soft_sharing(keras.Input((6,)), tasks, **kwargs)


def test_several_inputs_need_input_features():
    inputs = [keras.Input((3,)), keras.Input((2,))]
    with pytest.raises(ValueError, match="has 2 inputs; pass `input_features`"):
        soft_sharing(inputs, TASKS)
    with pytest.raises(ValueError, match=r"feature vector \(batch, d\)"):
        soft_sharing(keras.Input((4, 4)), TASKS)
