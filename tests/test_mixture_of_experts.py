"""Tests for the mixture-of-experts layers (Experts, ExpertGate, ExpertMixture), the mmoe and ple builders and
expert utilisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import fit_and_round_trip

import kmtl
from kmtl import Task
from kmtl.builders.mmoe import mmoe
from kmtl.builders.ple import ple
from kmtl.layers.mixture_of_experts import ExpertGate, ExpertMixture, Experts
from kmtl.training.expert_utilization import ExpertUtilizationLogger, expert_utilization

RNG = np.random.default_rng(0)


def run_layer_round_trip(layer, inputs, expected_shape, tmp_path, apply=lambda layer, xs: layer(*xs)):
    """Config, symbolic/eager shapes, one fit step and `.keras` round trip of a model around `layer`."""
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config

    symbolic_in = [keras.Input(x.shape[1:], name=f"x{i}") for i, x in enumerate(inputs)]
    symbolic_out = apply(layer, symbolic_in)
    assert tuple(symbolic_out.shape) == (None,) + expected_shape
    eager_out = apply(layer, [keras.ops.convert_to_tensor(x) for x in inputs])
    assert tuple(eager_out.shape) == (len(inputs[0]),) + expected_shape

    out = keras.layers.Dense(1, name="out")(keras.layers.Flatten()(symbolic_out))
    model = keras.Model(symbolic_in, out)
    labels = RNG.normal(size=(len(inputs[0]), 1))
    fit_and_round_trip(model, inputs, labels, tmp_path, watched=layer.trainable_weights)  # every weight trains


# === Layers: round trips ===


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"num_experts": 3, "units": 4}, (3, 4)),
        ({"num_experts": 2, "units": 3, "hidden_units": [5, 4], "activation": "tanh"}, (2, 3)),
    ],
)
def test_experts_round_trip(kwargs, expected, tmp_path):
    # Biases start at zero and tanh keeps every unit alive, so every weight moves in one step; relu experts
    # could leave a dead unit's bias unchanged, hence a random bias initialiser.
    layer = Experts(bias_initializer=keras.initializers.RandomNormal(seed=1), **kwargs)
    run_layer_round_trip(layer, [RNG.normal(size=(6, 5)).astype("float32")], expected, tmp_path)


def test_gate_round_trip(tmp_path):
    run_layer_round_trip(ExpertGate(3), [RNG.normal(size=(6, 5)).astype("float32")], (3,), tmp_path)


def test_mixture_round_trip(tmp_path):
    inputs = [RNG.normal(size=(6, 2, 4)).astype("float32"), RNG.normal(size=(6, 1, 4)).astype("float32"),
              RNG.normal(size=(6, 3)).astype("float32")]

    def apply(layer, xs):
        return layer([xs[0], xs[1]], keras.layers.Softmax()(xs[2]))

    run_layer_round_trip(ExpertMixture(), inputs, (4,), tmp_path, apply)


# === Layers: maths ===


def test_experts_equal_a_numpy_mlp_per_expert():
    x = RNG.normal(size=(4, 5))
    layer = Experts(3, 2, hidden_units=[6], dtype="float64")
    layer.build(x.shape)
    for variable in layer.trainable_weights:
        variable.assign(RNG.normal(size=variable.shape))
    k0, k1 = layer.kernels[0].numpy(), layer.kernels[1].numpy()
    b0, b1 = layer.biases[0].numpy(), layer.biases[1].numpy()
    expected = np.stack(
        [np.maximum(np.maximum(x @ k0[e] + b0[e], 0) @ k1[e] + b1[e], 0) for e in range(3)], axis=1
    )
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-12)


def test_experts_kernel_slices_are_initialised_like_dense_kernels():
    layer = Experts(8, 32, kernel_initializer=keras.initializers.GlorotUniform(seed=3))
    layer.build((None, 64))
    kernel = layer.kernels[0].numpy()
    limit = np.sqrt(6.0 / (64 + 32))  # Glorot for one (64, 32) Dense kernel
    assert np.abs(kernel).max() <= limit
    np.testing.assert_allclose(kernel.var(axis=(1, 2)), limit**2 / 3, rtol=0.15)  # uniform variance, 2048 draws
    assert not np.allclose(kernel[0], kernel[1])  # experts differ


def test_gate_is_softmax_of_affine_map_and_rows_sum_to_one():
    x = RNG.normal(size=(5, 4))
    layer = ExpertGate(3, dtype="float64")
    layer.build(x.shape)
    layer.kernel.assign(RNG.normal(size=(4, 3)))
    layer.bias.assign(RNG.normal(size=(3,)))
    logits = x @ layer.kernel.numpy() + layer.bias.numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    weights = layer(x).numpy()
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)


def test_mixture_is_the_gate_weighted_sum_of_experts():
    own, shared = RNG.normal(size=(4, 1, 3)), RNG.normal(size=(4, 2, 3))
    gates = RNG.dirichlet(np.ones(3), size=4)
    experts = np.concatenate([own, shared], axis=1)
    expected = np.stack([sum(gates[b, e] * experts[b, e] for e in range(3)) for b in range(4)])
    layer = ExpertMixture(dtype="float64")
    np.testing.assert_allclose(layer(experts, gates).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(layer([own, shared], gates).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Experts(0, 4), "Invalid value for `num_experts`.*Received: num_experts=0"),
        (lambda: Experts(2, True), "Invalid value for `units`"),
        (lambda: Experts(2, 4, hidden_units=8), "Invalid value for `hidden_units`.*hidden_units=8"),
        (lambda: Experts(2, 4, hidden_units=[8, 0]), "Invalid value for `hidden_units`"),
        (lambda: ExpertGate(-1), "Invalid value for `num_experts`.*num_experts=-1"),
    ],
)
def test_invalid_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mixture_checks_shapes():
    with pytest.raises(ValueError, match="one gate weight per expert: 3 experts"):
        ExpertMixture()(keras.Input((3, 4)), keras.Input((2,)))
    with pytest.raises(ValueError, match="alike but for num_experts"):
        ExpertMixture()([keras.Input((1, 4)), keras.Input((2, 5))], keras.Input((3,)))


# === Builders ===

TASKS = [Task("a", "binary"), Task("b", "regression")]
N = 128


def make_data(n=N, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {"a": (x[:, 0] - x[:, 1] > 0).astype("int32"), "b": (x[:, 2] * x[:, 3] + x[:, 4]).astype("float32")}
    return x, y


def build(builder, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="trunk")(x)
    return builder(x, h, TASKS, expert_units=8, tower_units=(4,), **kwargs)


def ids(layers_or_variables, names=None):
    if names is not None:
        return {id(v) for name in names for v in layers_or_variables.get_layer(name).trainable_variables}
    return {id(v) for v in layers_or_variables}


BUILDERS = {
    "mmoe": lambda: build(mmoe, num_experts=3),
    "ple": lambda: build(ple, num_levels=2, shared_experts=2, task_experts=1),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_builder_fit_round_trip_and_export(name, tmp_path):
    model = BUILDERS[name]()
    assert isinstance(model, kmtl.MultiTaskModel)
    assert sorted(model.output) == ["a", "b"]
    x, y = make_data()
    model.compile(optimizer=keras.optimizers.Adam(0.02), weighting="equal")
    before = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert after["loss"] < before["loss"]

    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, kmtl.MultiTaskModel)
    expected = model.predict(x, verbose=0)
    got = restored.predict(x, verbose=0)
    for task in ("a", "b"):
        np.testing.assert_allclose(got[task], expected[task], atol=1e-6)
    usage, restored_usage = expert_utilization(model, x), expert_utilization(restored, x)
    for task in ("a", "b"):
        np.testing.assert_allclose(restored_usage[task], usage[task], atol=1e-6)

    export = kmtl.export.for_serving(model, tmp_path / "serving")
    served = tf.saved_model.load(str(export)).signatures["serving_default"](x=tf.constant(x[:5]))
    np.testing.assert_allclose(served["a"].numpy(), expected["a"][:5, 0], atol=1e-5)
    np.testing.assert_allclose(served["b"].numpy(), expected["b"][:5, 0], atol=1e-5)


def test_mmoe_layers_and_partition():
    model = build(mmoe, num_experts=3)
    assert tuple(model.get_layer("experts").output.shape) == (None, 3, 8)
    for task in ("a", "b"):
        assert tuple(model.get_layer(f"gate_{task}").output.shape) == (None, 3)
    # Experts (and the trunk) feed every task: shared. A gate, tower and head feed one task: that task's.
    assert ids(model.shared_variables) == ids(model, ["trunk", "experts"])
    for task in ("a", "b"):
        assert ids(model.task_variables[task]) == ids(model, [f"gate_{task}", f"tower_{task}", task])


@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_ple_layers_and_partition(num_levels):
    model = build(ple, num_levels=num_levels, shared_experts=2, task_experts=1)
    for task in ("a", "b"):
        assert tuple(model.get_layer(f"gate_{task}").output.shape) == (None, 3)  # own expert, then 2 shared
    last = f"level{num_levels}_"
    shared = ["trunk"] + [f"level{l}_shared_experts" for l in range(1, num_levels + 1)]
    shared += [f"level{l}_shared_gate" for l in range(1, num_levels)]
    # Below the last level a task's experts feed the shared gate's mixture, hence every task: the graph says
    # shared. A task's gate at level l feeds only its experts of level l + 1: its own when l + 1 is the last level.
    shared += [f"level{l}_experts_{t}" for l in range(1, num_levels) for t in ("a", "b")]
    shared += [f"level{l}_gate_{t}" for l in range(1, num_levels - 1) for t in ("a", "b")]
    assert ids(model.shared_variables) == ids(model, shared)
    for task in ("a", "b"):
        own = [f"{last}experts_{task}", f"gate_{task}", f"tower_{task}", task]
        if num_levels > 1:
            own.append(f"level{num_levels - 1}_gate_{task}")
        assert ids(model.task_variables[task]) == ids(model, own)
    if num_levels > 1:
        # The shared gate weighs every expert of its level: one per task, then the shared ones.
        assert tuple(model.get_layer("level1_shared_gate").output.shape) == (None, 4)


def test_ple_without_shared_or_task_experts():
    model = build(ple, num_levels=2, shared_experts=0, task_experts=2)
    assert tuple(model.get_layer("gate_a").output.shape) == (None, 2)
    model = build(ple, num_levels=1, shared_experts=3, task_experts=0)
    assert tuple(model.get_layer("gate_a").output.shape) == (None, 3)
    assert ids(model.task_variables["a"]) == ids(model, ["gate_a", "tower_a", "a"])


@pytest.mark.parametrize(
    "builder, kwargs, match",
    [
        (mmoe, {"num_experts": 0}, "Invalid value for `num_experts`.*num_experts=0"),
        (mmoe, {"expert_hidden": [4, -1]}, "Invalid value for `expert_hidden`"),
        (mmoe, {"tower_units": {"c": (4,)}}, r"`tower_units` names unknown task\(s\) \['c'\]"),
        (mmoe, {"dropout": 1.0}, "Invalid value for `dropout`.*dropout=1.0"),
        (ple, {"num_levels": 0}, "Invalid value for `num_levels`.*num_levels=0"),
        (ple, {"shared_experts": -1}, "Invalid value for `shared_experts`"),
        (ple, {"shared_experts": 0, "task_experts": 0}, "at least one expert per gate"),
    ],
)
def test_invalid_builder_arguments(builder, kwargs, match):
    x = keras.Input((6,))
    with pytest.raises(ValueError, match=match):
        builder(x, x, TASKS, **kwargs)


def test_builders_need_a_feature_vector():
    x = keras.Input((4, 6))
    with pytest.raises(ValueError, match=r"Invalid value for `features`.*\(None, 4, 6\)"):
        mmoe(x, x, TASKS)


def test_per_task_tower_units():
    x = keras.Input((6,), name="x")
    model = mmoe(x, x, TASKS, num_experts=2, expert_units=4, tower_units={"a": (5, 3)})
    assert [layer.units for layer in model.get_layer("tower_a").layers] == [5, 3]
    assert "tower_b" not in {layer.name for layer in model.layers}


# === Expert utilisation ===


def test_expert_utilization_is_the_mean_gate_weight():
    model = build(mmoe, num_experts=3)
    x, y = make_data(n=20)
    usage = expert_utilization(model, x, batch_size=8)
    gates = keras.Model(model.input, model.get_layer("gate_b").output).predict(x, verbose=0)
    np.testing.assert_allclose(usage["b"], gates.mean(axis=0), rtol=1e-6)
    for task in ("a", "b"):
        assert usage[task].shape == (3,)
        np.testing.assert_allclose(usage[task].sum(), 1.0, rtol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    np.testing.assert_allclose(expert_utilization(model, dataset)["b"], usage["b"], rtol=1e-6)
    only = expert_utilization(model, x, gates={"first": "gate_a"})
    assert sorted(only) == ["first"]


def test_expert_utilization_needs_gates():
    x = keras.Input((3,), name="x")
    model = kmtl.builders.hard_sharing(x, keras.layers.Dense(4)(x), TASKS)
    with pytest.raises(ValueError, match="no gate layers named gate_<task>"):
        expert_utilization(model, np.ones((2, 3)))
    with pytest.raises(ValueError, match="no gate layer named 'gate_z' for 'z'"):
        expert_utilization(model, np.ones((2, 3)), gates={"z": "gate_z"})


def test_logger_records_utilization_each_epoch():
    model = build(ple, num_levels=1, shared_experts=2, task_experts=1)
    model.compile(optimizer="adam")
    x, y = make_data(n=32)
    logger = ExpertUtilizationLogger(x[:10])
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[logger])
    assert [len(logger.history[t]) for t in ("a", "b")] == [2, 2]
    np.testing.assert_allclose(logger.history["a"][-1], expert_utilization(model, x[:10])["a"], rtol=1e-6)
    for e in range(3):
        assert len(history.history[f"a_expert_{e}"]) == 2
    np.testing.assert_allclose(sum(history.history[f"b_expert_{e}"][0] for e in range(3)), 1.0, rtol=1e-6)
