"""Properties of the training step that must hold for every builder and every gradient-level strategy.

1. A gradient-level strategy whose aggregation is the sum of the task gradients makes exactly the update of
   `weighting="equal"` (to 1e-6), with layer regularisers, `add_loss` losses and cross-layer penalties on or off,
   with `rep_grad` on or off.
2. For every gradient-level strategy, regularisation adds exactly its own gradient: the change that turning the
   regularisers and penalties on makes to one SGD step is the same as under `weighting="equal"`.
3. Save -> load -> next step equals the uninterrupted next step, for every strategy, with tasks not in
   alphabetical order.

The grid (builders x strategies x rep_grad x regularisation) is slow; a representative subset runs unmarked.
"""

import functools

import keras
import numpy as np
import pytest
from keras import ops

import kmtl
from kmtl.regularizers import SoftSharingL2
from kmtl.weighting import GradientWeighting
from weighting_testing import make_data, make_model

GRADIENT_STRATEGIES = sorted(n for n in kmtl.weighting.STRATEGIES if kmtl.weighting.get(n).gradient_level)
LEVELS = {"a": 1, "b": 2, "c": 2}


@keras.saving.register_keras_serializable(package="kmtl_tests")
class SumAggregate(GradientWeighting):
    """The plain sum of the task gradients: linear in G, so it must reproduce equal weighting."""

    def aggregate(self, grads, losses):
        return ops.sum(grads, axis=0), ops.ones_like(losses)


# === The models: every builder, with or without regularisation ===


def _trunk(x, regularization):
    """Two stacked shared Dense layers `trunk` and `trunk_b` (4 x 4 kernels, so a penalty can tie them)."""
    on = regularization == "regularizers"
    h = keras.layers.Dense(
        4, activation="tanh", name="trunk", kernel_regularizer=keras.regularizers.L2(0.5) if on else None
    )(x)
    if on:
        h = keras.layers.ActivityRegularization(l2=0.5, name="activity")(h)
    return keras.layers.Dense(4, activation="tanh", name="trunk_b")(h)


def _two_levels(x, tasks, h):
    """Task `a` reads `trunk`, the others read `trunk_b` above it (one boundary tensor depends on another)."""
    low = h._keras_history.operation.input  # the output of `trunk` (or of `activity`)
    outputs = {t.name: kmtl.heads.task_head(t, low if t.name == "a" else h) for t in tasks}
    return kmtl.MultiTaskModel(x, outputs, tasks=tasks)


def _joined(x, tasks, h):
    """Heads that read a `keras.ops` result (no layer) of both shared layers; `a`'s also reads the raw input."""
    low = h._keras_history.operation.input
    joined = keras.ops.concatenate([low, h], axis=-1)
    with_input = keras.layers.Concatenate(name="a_with_input")([joined, x])
    outputs = {t.name: kmtl.heads.task_head(t, with_input if t.name == "a" else joined) for t in tasks}
    return kmtl.MultiTaskModel(x, outputs, tasks=tasks)


BUILDERS = {
    "hard_sharing": lambda x, t, h, r: kmtl.builders.hard_sharing(x, h, t, head_units=(3,)),
    "two_levels": lambda x, t, h, r: _two_levels(x, t, h),
    "hierarchy": lambda x, t, h, r: kmtl.builders.hierarchy(x, t, LEVELS, units=3, input_features=h),
    # `a`'s head is shared (the levels above read its label embedding) and is `a`'s output.
    "hierarchy_embedding": lambda x, t, h, r: kmtl.builders.hierarchy(
        x, t, {"a": 1, "b": 2, "c": 3}, units=3, input_features=h, shortcuts=True, label_embeddings={"a": 2},
        estimate_links={"c": ["b"]},
    ),
    "joined": lambda x, t, h, r: _joined(x, t, h),
    "mmoe": lambda x, t, h, r: kmtl.builders.mmoe(x, h, t, num_experts=2, expert_units=3, tower_units=(2,)),
    "ple": lambda x, t, h, r: kmtl.builders.ple(
        x, h, t, num_levels=2, shared_experts=1, task_experts=1, expert_units=3, tower_units=(2,)
    ),
    "cross_stitch": lambda x, t, h, r: kmtl.builders.cross_stitch(x, t, units=(3,), input_features=h),
    "sluice": lambda x, t, h, r: kmtl.builders.sluice(x, t, units=(4,), input_features=h),
    "soft_sharing": lambda x, t, h, r: kmtl.builders.soft_sharing(
        x, t, tower_units=(3,), input_features=h, strength=1.0 if r == "penalties" else 0.0
    ),
    "split": lambda x, t, h, r: kmtl.builders.split(x, t, units=(4,), input_features=h),
    "stacked_heads": lambda x, t, h, r: kmtl.builders.stacked_heads_model(x, h, t),
}


def _builder(name, regularization, order=None):
    """`builder(x, tasks)` for `make_model`: builder `name` over `_trunk`, tasks in `order` (names) if given."""

    def build(x, tasks):
        if order is not None:
            tasks = [next(t for t in tasks if t.name == n) for n in order]
        model = BUILDERS[name](x, tasks, _trunk(x, regularization), regularization)
        if regularization == "penalties":
            penalty = SoftSharingL2(["trunk", "trunk_b"], strength=1.0)
            model = kmtl.MultiTaskModel(
                model.input, model.output, tasks=model.tasks, penalties=[*model.penalties, penalty]
            )
        return model

    return build


def _step(weighting, builder="hard_sharing", regularization="none", steps=1, **kwargs):
    """The model's trainable weights (strategy's excluded) after `steps` SGD steps on the whole batch.

    Eager unless told otherwise: a tiny model's step is quicker to run eagerly than to trace and compile, and the
    traced step is covered by the `jit_compile` cases below.
    """
    kwargs.setdefault("run_eagerly", True)
    model = make_model(weighting, builder=_builder(builder, regularization), **kwargs)
    x, y = make_data()
    model.fit(x, y, batch_size=16, epochs=steps, verbose=0, shuffle=False)
    own = {id(v) for v in model.weighting.weights}
    return {v.path: v.numpy() for v in model.trainable_variables if id(v) not in own}


def _assert_same(got, expected, atol=1e-6):
    assert sorted(got) == sorted(expected)
    for path in expected:
        np.testing.assert_allclose(got[path], expected[path], atol=atol, rtol=0, err_msg=path)


# === 1. The sum aggregation is equal weighting ===

FAST_SUM = {("hard_sharing", "regularizers"), ("hard_sharing", "penalties"), ("two_levels", "regularizers"),
            ("hierarchy", "none"), ("soft_sharing", "penalties"), ("hierarchy_embedding", "none"), ("joined", "none")}


def _sum_cases():
    for builder in BUILDERS:
        for regularization in ("none", "regularizers", "penalties"):
            for rep_grad in (False, True):
                for strategy in ("sum", "graddrop_leak_1"):
                    fast = (builder, regularization) in FAST_SUM and strategy == "sum"
                    marks = () if fast else (pytest.mark.slow,)
                    yield pytest.param(builder, regularization, rep_grad, strategy, marks=marks)


def _sum_strategy(name, rep_grad):
    if name == "sum":
        return SumAggregate(rep_grad=rep_grad)
    return kmtl.weighting.GradDrop(leak=1.0, seed=0, rep_grad=rep_grad)  # leak 1: every sign mask is kept


@pytest.mark.parametrize("builder,regularization,rep_grad,strategy", list(_sum_cases()))
def test_sum_aggregation_makes_the_equal_weighting_update(builder, regularization, rep_grad, strategy):
    expected = _step("equal", builder, regularization)
    got = _step(_sum_strategy(strategy, rep_grad), builder, regularization)
    _assert_same(got, expected)


# === 2. Regularisation adds its own gradient, whatever the strategy ===

FAST_REGULARIZED = ("pcgrad", "mgda")


@functools.lru_cache(maxsize=None)
def _regularization_effect(weighting, builder, regularization):
    with_ = _step(weighting, builder, regularization)
    without = _step(weighting, builder, "none")
    return {p: with_[p] - without[p] for p in without}


@pytest.mark.parametrize(
    "strategy",
    [s if s in FAST_REGULARIZED else pytest.param(s, marks=pytest.mark.slow) for s in GRADIENT_STRATEGIES],
)
@pytest.mark.parametrize("regularization", ["regularizers", "penalties"])
def test_regularization_adds_its_gradient_under_every_strategy(strategy, regularization):
    # Equal regularisation under the strategy as under equal weighting: the strategy sees the same G either way.
    expected = _regularization_effect("equal", "hard_sharing", regularization)
    got = _regularization_effect(strategy, "hard_sharing", regularization)
    _assert_same(got, expected)
    assert max(np.abs(v).max() for v in expected.values()) > 1e-3  # the regularisation does move the weights


# === 3. Save -> load -> next step equals the uninterrupted next step ===

ORDER = ("c", "a", "b")  # not alphabetical; `a`'s and `c`'s hidden head layers have the same shape
FAST_SAVE = ("pcgrad",)


def _seeded(name):
    """Strategy `name` with a fixed seed where it draws random numbers (a restored run must draw the same)."""
    strategy = kmtl.weighting.get(name)
    config = strategy.get_config()
    return type(strategy).from_config({**config, "seed": 0}) if "seed" in config else strategy


def _fresh(strategy, **compile_kwargs):
    optimizer = keras.optimizers.Adam(0.01)
    builder = _builder("hard_sharing", "regularizers", order=ORDER)
    return make_model(_seeded(strategy), optimizer=optimizer, builder=builder, run_eagerly=True, **compile_kwargs)


def _assert_resumes_exactly(strategy, tmp_path, **compile_kwargs):
    x, y = make_data()
    straight = _fresh(strategy, **compile_kwargs)
    straight.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    model = _fresh(strategy, **compile_kwargs)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, steps_per_epoch=1)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.task_names == list(ORDER)
    loaded.run_eagerly = True  # as the others (quicker for a tiny model; not saved with the compile config)
    loaded.fit(x[8:], {k: v[8:] for k, v in y.items()}, batch_size=8, epochs=1, verbose=0, shuffle=False)
    expected = {v.path: v.numpy() for v in straight.weights}
    _assert_same({v.path: v.numpy() for v in loaded.weights}, expected, atol=1e-5)
    # Each slot holds its own variable's state (paths differ only in the optimizer's unique name, "adam_1/...").
    slots = {v.path.split("/", 1)[1]: v.numpy() for v in straight.optimizer.variables}
    _assert_same({v.path.split("/", 1)[1]: v.numpy() for v in loaded.optimizer.variables}, slots, atol=1e-5)


@pytest.mark.parametrize(
    "strategy",
    [s if s in FAST_SAVE else pytest.param(s, marks=pytest.mark.slow) for s in GRADIENT_STRATEGIES + ["equal"]],
)
def test_save_load_then_step_equals_the_uninterrupted_step(strategy, tmp_path):
    _assert_resumes_exactly(strategy, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["pcgrad", "equal"])
def test_save_load_then_step_with_task_learning_rates(strategy, tmp_path):
    _assert_resumes_exactly(strategy, tmp_path, task_learning_rates={"a": 0.1, "c": 0.001})


# === The same properties in every mode of the step ===


@pytest.mark.parametrize(
    "compile_kwargs",
    [
        {"gradient_method": "jacobian"},
        pytest.param({"run_eagerly": False, "jit_compile": True}, marks=pytest.mark.slow),
        pytest.param({"run_eagerly": False, "jit_compile": False, "gradient_method": "jacobian"},
                     marks=pytest.mark.slow),
    ],
    ids=["jacobian", "xla", "graph-jacobian"],
)
@pytest.mark.parametrize("builder,rep_grad", [("hard_sharing", False), ("two_levels", True)])
def test_sum_aggregation_in_every_step_mode(builder, rep_grad, compile_kwargs):
    expected = _step("equal", builder, "regularizers", **compile_kwargs)
    got = _step(SumAggregate(rep_grad=rep_grad), builder, "regularizers", **compile_kwargs)
    _assert_same(got, expected)


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.mark.slow
@pytest.mark.parametrize("rep_grad", [False, True])
def test_sum_aggregation_under_mixed_precision(mixed_precision, rep_grad):
    """The loss scale applies to the regularisation too (an unscaled one would be lost: its effect is ~0.1)."""
    expected = _step("equal", "two_levels", "regularizers")
    got = _step(SumAggregate(rep_grad=rep_grad), "two_levels", "regularizers")
    # float16 activations: the two steps sum the same float16 gradients in different orders.
    _assert_same(got, expected, atol=2e-3)


def test_sum_aggregation_with_task_learning_rates():
    """MultiOptimizer with a gradient-level strategy: the same update as with equal weighting."""
    rates = {"a": 0.01, "c": 0.5}
    expected = _step("equal", "hard_sharing", "penalties", task_learning_rates=rates)
    got = _step(SumAggregate(), "hard_sharing", "penalties", task_learning_rates=rates)
    _assert_same(got, expected)


def test_the_representation_is_shared_tensors_only():
    """`rep_grad`'s G has a column per entry of the shared representation: never of a model input."""
    model = make_model(SumAggregate(rep_grad=True), builder=_builder("joined", "none"))
    trunk = model._gradient_plan().trunk
    inputs = {id(t) for t in keras.tree.flatten(model.input)}
    assert [t.shape[-1] for t in trunk.outputs] == [8]  # the join of `trunk` and `trunk_b`, which the heads read
    assert not any(id(t) in inputs for t in trunk.outputs)
