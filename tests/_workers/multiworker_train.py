"""Worker of tests/test_multiworker.py: trains a tiny MultiTaskModel and writes its final weights and logs.

With `TF_CONFIG` set (by the parent test) it trains under `tf.distribute.MultiWorkerMirroredStrategy`; without, on
one device. The model and data builders are imported by the test for its in-process single-device reference.

Usage: python multiworker_train.py OUT.npz WEIGHTING EPOCHS
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 8


def build_model(weighting):
    import keras

    import kmtl
    from kmtl.weighting.min_norm import MGDA

    tasks = [kmtl.Task("a", "regression"), kmtl.Task("b", "binary"), kmtl.Task("c", "multiclass", num_classes=3)]
    keras.utils.set_random_seed(0)
    x = keras.Input((5,), name="x")
    h = keras.layers.Dense(8, activation="tanh", name="shared1")(x)
    h = keras.layers.Dense(6, activation="tanh", name="shared2")(h)
    model = kmtl.builders.hard_sharing(x, h, tasks, head_units=(4,))
    # Keras 3.15's fit needs `MultiWorkerSupport` with several workers (a no-op otherwise); until MultiTaskModel
    # has it among its bases, wrap the built graph in a subclass that does.
    model = _multi_worker_class()(model.input, model.output, tasks=model.tasks)
    strategy = MGDA(normalization="l2") if weighting == "mgda" else weighting
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=strategy)
    return model


def _multi_worker_class():
    import kmtl
    from kmtl.training.distribute import MultiWorkerSupport

    if issubclass(kmtl.MultiTaskModel, MultiWorkerSupport):
        return kmtl.MultiTaskModel
    return type("MultiWorkerMultiTaskModel", (MultiWorkerSupport, kmtl.MultiTaskModel), {})


def make_dataset(n=24):
    """24 rows in 3 global batches of 8, with missing labels spread unevenly over the workers' halves."""
    from kmtl.training.distribute import with_auto_shard_policy

    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = {
        "a": rng.normal(size=(n, 1)).astype("float32"),
        "b": rng.integers(0, 2, size=(n, 1)).astype("float32"),
        "c": rng.integers(0, 3, size=(n,)).astype("int32"),
    }
    y["a"][[0, 1, 2, 9, 17]] = np.nan
    y["b"][[5, 12, 13, 14]] = -1
    y["c"][[8, 10, 20]] = -1
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    # DATA: each worker keeps its half of every global batch, so the global batches are the single process's.
    return with_auto_shard_policy(dataset, "data")


def main(out_path, weighting, epochs):
    if "TF_CONFIG" in os.environ:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()  # first, before any other TensorFlow work
    else:
        strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = build_model(weighting)
    history = model.fit(make_dataset(), epochs=epochs, verbose=0, shuffle=False)
    evaluation = model.evaluate(make_dataset(), verbose=0, return_dict=True)
    weights = {f"w{i}": np.asarray(v.numpy()) for i, v in enumerate(model.weights)}
    np.savez(out_path, logs=json.dumps(history.history), evaluation=json.dumps(evaluation),
             replicas=strategy.num_replicas_in_sync, **weights)
    print("finished", out_path, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
