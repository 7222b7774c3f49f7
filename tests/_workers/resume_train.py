"""Worker of tests/test_fault_tolerance.py: a deterministic training run with `kmtl.training.BackupAndResume`.

Dropout, DWA weighting (its weights depend on earlier epochs' losses) and a tf.data stream reshuffled on every pass:
every kind of state a resume must restore. With PAUSE_AFTER > 0 the run stops after that many steps, writes
`OUT.paused` and waits to be killed.

Usage: python resume_train.py BACKUP_DIR OUT.npz PAUSE_AFTER
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kmtl  # noqa: E402
from kmtl.training.backup import BackupAndResume  # noqa: E402

ROWS, BATCH, EPOCHS, SAVE_FREQ = 24, 4, 3, 2


class PauseAfter(keras.callbacks.Callback):
    def __init__(self, steps, marker):
        super().__init__()
        self.steps, self.marker, self.seen = steps, marker, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.steps:
            with open(self.marker, "w") as f:
                f.write(str(self.seen))
            time.sleep(600)  # killed by the test long before


def main(backup_dir, out, pause_after):
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()  # (XLA is then not used)
    tasks = [kmtl.Task("a", "regression"), kmtl.Task("b", "binary"), kmtl.Task("c", "multiclass", num_classes=3)]
    x = keras.Input((5,), name="x")
    h = keras.layers.Dense(8, activation="tanh", name="shared1")(x)
    h = keras.layers.Dropout(0.3, name="shared_dropout")(h)
    model = kmtl.builders.hard_sharing(x, h, tasks, head_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(0.01), weighting="dwa")

    rng = np.random.default_rng(1)
    features = rng.normal(size=(ROWS, 5)).astype("float32")
    labels = {
        "a": rng.normal(size=(ROWS, 1)).astype("float32"),
        "b": rng.integers(0, 2, size=(ROWS, 1)).astype("float32"),
        "c": rng.integers(0, 3, size=(ROWS,)).astype("int32"),
    }
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    dataset = dataset.shuffle(ROWS, seed=2, reshuffle_each_iteration=True).repeat().batch(BATCH)

    backup = BackupAndResume(backup_dir, save_freq=SAVE_FREQ)
    callbacks = [backup] + ([PauseAfter(pause_after, out + ".paused")] if pause_after else [])
    model.fit(dataset, steps_per_epoch=ROWS // BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    print("restored", backup.restored, flush=True)
    np.savez(out, **{v.path.replace("/", "__") + f"_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.weights)})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
