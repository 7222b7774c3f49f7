"""`tf.distribute.MirroredStrategy` on two logical CPU devices makes the same updates as one device on the same global
batch: MultiTaskModel with loss-level and gradient-level strategies (stateful, random, epoch-hooked) and the recipes.

Always the session's `mirrored_strategy` fixture (tests/conftest.py): several MirroredStrategy objects in one process
mix up their collective instance keys.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny_data, tiny_model

import kmtl
from kmtl import Task
from kmtl.weighting.dynamic import RLW
from kmtl.weighting.gradient_stateful import GradNorm
from kmtl.weighting.min_norm import MGDA

TASKS = [Task("a", "regression"), Task("b", "binary"), Task("c", "multiclass", num_classes=3)]
GLOBAL_BATCH = 8


# The model every comparison builds: two shared layers, a hidden layer in each head.
ARCHITECTURE = {"tasks": TASKS, "input_dim": 5, "trunk_units": (8, 6), "head_units": (4,)}


def make_dataset(n=20, seed=1):
    """20 rows in global batches of 8 (the last one of 4, split 2/2), with missing labels uneven across replicas."""
    x, y = tiny_data(TASKS, n=n, input_dim=5, seed=seed)
    y["a"][[0, 1, 2, 9, 17]] = np.nan  # replica 0 of batch 0 has 3 missing, replica 1 none
    y["b"][[5, 12, 13, 14]] = -1
    y["c"][[8, 10]] = -1
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)


def train(build, dataset, strategy=None, epochs=2, **fit_kwargs):
    """Builds (under `strategy.scope()` if given), fits, and returns `(model, weights, history)`."""
    if strategy is None:
        model = build()
    else:
        with strategy.scope():
            model = build()
    history = model.fit(dataset, epochs=epochs, verbose=0, shuffle=False, **fit_kwargs)
    return model, [np.asarray(v.numpy()) for v in model.weights], history.history


def assert_same_weights(model, expected, got, atol):
    assert len(expected) == len(got)
    for variable, a, b in zip(model.weights, expected, got):
        np.testing.assert_allclose(b, a, atol=atol, rtol=0, err_msg=variable.path)


# === MultiTaskModel: loss-level and gradient-level strategies ===

STRATEGIES = {
    # Loss-level, state updated by every step and by the epoch hook (weights from the last two epochs' losses).
    "dwa": lambda: "dwa",
    # Loss-level, random: both replicas must draw the same weights as one device does.
    "rlw": lambda: RLW(seed=3),
    # Gradient-level: per-task gradients reduced across replicas before the min-norm solve.
    "mgda": lambda: MGDA(normalization="l2"),
    # Gradient-level with trainable state updated inside `aggregate`.
    "gradnorm": lambda: GradNorm(alpha=1.5, learning_rate=0.1),
}


@pytest.mark.slow  # trains and restores or runs two replicas: several seconds on 2 cores
@pytest.mark.parametrize(
    "name",
    # One loss-level and one gradient-level strategy by default; each case is two fits, about 5-15 s on 2 shared cores.
    ["dwa", "mgda", pytest.param("rlw", marks=pytest.mark.slow), pytest.param("gradnorm", marks=pytest.mark.slow)],
)
def test_multitask_model_mirrored_equals_one_device(mirrored_strategy, name):
    """3 epochs of 3 steps (the last batch partial), SGD: weights, strategy state and logged losses agree."""

    def build():
        return tiny_model(STRATEGIES[name](), optimizer=keras.optimizers.SGD(0.1), **ARCHITECTURE)

    dataset = make_dataset()
    single, expected, logs_single = train(build, dataset, epochs=3)
    mirrored, got, logs_mirrored = train(build, dataset, mirrored_strategy, epochs=3)
    # Same float32 maths in a different summation order (all-reduce of the two halves): 1e-5.
    assert_same_weights(single, expected, got, atol=1e-5)
    for key, values in logs_single.items():
        np.testing.assert_allclose(logs_mirrored[key], values, atol=1e-5, err_msg=key)
    # The run moved the weights (a test on frozen weights would pass for any strategy).
    initial = [v.numpy() for v in tiny_model(compile=False, **ARCHITECTURE).weights]
    assert max(np.abs(a - b).max() for a, b in zip(initial, expected[: len(initial)])) > 1e-2


@pytest.mark.slow  # two more fits; it documents why the comparisons use dropout 0
def test_mirrored_training_with_dropout_differs_from_one_device(mirrored_strategy):
    """Why the comparisons above use dropout 0: each replica draws its own mask for its half-batch, so the masks
    (and the update) are not the one-device run's, although both are valid dropout."""

    def build():
        return tiny_model("equal", optimizer=keras.optimizers.SGD(0.1), dropout=0.5, **ARCHITECTURE)

    dataset = make_dataset()
    single, expected, _ = train(build, dataset, epochs=1)
    _, got, _ = train(build, dataset, mirrored_strategy, epochs=1)
    assert max(np.abs(a - b).max() for a, b in zip(expected, got)) > 1e-4


# === Recipes ===


def _synchronized_batch_norm(model):
    """The same model with every BatchNormalization computing its statistics over the global batch."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["synchronized"] = True
    return kmtl.MultiTaskModel.from_config(config)


@pytest.mark.slow  # four fits of the 8-task CNN (two under MirroredStrategy): about 40-80 s on 2 shared cores
def test_facial_attributes_mirrored_equals_one_device(mirrored_strategy):
    """The recipe's CNN at tiny sizes with its own normalisation layers and default weighting, dropout 0, 2 epochs
    of 2 steps.

    SGD, not the recipe's Adam: Adam divides each gradient by its running root mean square, so its step does not
    change when every gradient is scaled (a mirrored step that summed the replicas' gradients instead of averaging
    them would pass), and it magnifies summation-order noise in gradients near zero into weight differences of up
    to the learning rate (one conv1a weight 5.4e-5 apart after these 4 steps at the recipe's 1e-3, within 1e-5 at
    2e-3 by chance). SGD's step is the gradient times the rate, so the weights agree to 1e-5 exactly when the
    all-reduced gradients do; the optimiser itself runs the same on either device.

    Keras BatchNormalization normalises each replica's half-batch by its own statistics by default, so the mirrored
    run is a different computation; with `synchronized=True` the statistics are the global batch's and the runs
    agree to 1e-5.
    """
    from kmtl.recipes import facial_attributes as fa

    # The validation split is not shuffled: both runs see the same batches in the same order.
    _, data, _ = fa.load_data(num_train=8, num_val=16, num_test=8, image_size=16, batch_size=GLOBAL_BATCH)

    def build(synchronized):
        def make():
            keras.utils.set_random_seed(0)
            model = fa.build_model(image_size=16, filters=(4, 8), fusion_units=8, head_units=(4,), dropout=0.0)
            if synchronized:
                model = _synchronized_batch_norm(model)  # same layers and initial weights (seeded again above)
                keras.utils.set_random_seed(0)
            model.compile(optimizer=keras.optimizers.SGD(0.05), weighting=fa.DEFAULTS["weighting"])
            return model

        return make

    single, expected, logs_single = train(build(True), data)
    _, got, logs_mirrored = train(build(True), data, mirrored_strategy)
    assert_same_weights(single, expected, got, atol=1e-5)  # observed 1.8e-7
    np.testing.assert_allclose(logs_mirrored["loss"], logs_single["loss"], rtol=1e-5)
    # The steps moved the trainable weights (the moving statistics move even when nothing is learned).
    initial = {v.path: v.numpy() for v in build(True)().trainable_weights}
    assert max(np.abs(v.numpy() - initial[v.path]).max() for v in single.trainable_weights) > 1e-2

    _, per_replica, _ = train(build(False), data, mirrored_strategy)
    _, one_device, _ = train(build(False), data)
    # Per-replica statistics: a real difference, far above summation noise (observed 0.035).
    assert max(np.abs(a - b).max() for a, b in zip(one_device, per_replica)) > 1e-3


@pytest.mark.slow  # the recurrent recipe traced twice (one device, two replicas): about 30-60 s on 2 shared cores
@pytest.mark.parametrize("architecture", ["channelwise", "lstm"])
def test_clinical_timeseries_mirrored_equals_one_device(mirrored_strategy, architecture):
    """Padded ICU stays with per-step and whole-stay tasks and the recipe's static weights, 2 epochs."""
    from kmtl.recipes import clinical_timeseries as ct

    splits = ct.load_data(num_stays=24, batch_size=GLOBAL_BATCH, max_steps=60, seed=0)
    data = splits.val.concatenate(splits.test)  # unshuffled splits: the same batches in both runs

    def build():
        keras.utils.set_random_seed(0)
        model = ct.build_model(architecture, channel_units=2, shared_units=4, units=4, dropout=0.0,
                               **splits.model_settings)
        return ct.compile_model(model, learning_rate=1e-2)

    single, expected, logs_single = train(build, data)
    _, got, logs_mirrored = train(build, data, mirrored_strategy)
    assert_same_weights(single, expected, got, atol=1e-5)
    for task in ct.TASKS:
        np.testing.assert_allclose(logs_mirrored[f"{task.name}_loss"], logs_single[f"{task.name}_loss"], rtol=1e-5)
