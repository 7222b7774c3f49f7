"""`BackupAndResume`: back up training and resume an interrupted `fit` at the batch where it stopped.

What Keras 3.15's `keras.callbacks.BackupAndRestore` does, read from its source and checked by
tests/test_fault_tolerance.py: it saves the weights (optimizer state included) and `{"epoch", "batch"}`; on restart
it loads the weights and sets the initial epoch, but ignores `batch`, so the interrupted epoch starts again from its
first batch on weights that already learned part of it (those batches are trained twice). It also does not save the
random state of layers (dropout masks, kmtl's random strategies), the epoch's metric state, nor its own epoch after a
restore (a batch-level backup written in a resumed run before its first epoch end records epoch 0), and it saves at
`on_epoch_end`, possibly before later callbacks (such as kmtl's strategy epoch hook) have run.

`BackupAndResume` saves the whole training state just before the next training step (after every callback of the
previous one) and on restart skips exactly the batches already trained: it draws them from the data without training
on them. Data order: with numpy inputs, Keras draws the same permutation every epoch under
`keras.utils.set_random_seed`, and a `tf.data` pipeline without `reshuffle_each_iteration` repeats its order, so the
interrupted epoch's batches come again in a new process. A pipeline that reshuffles must be one stream across epochs
(`ds.shuffle(...).repeat()` with `fit(steps_per_epoch=...)`): Keras then keeps one iterator, and on restart it is
replayed from its start to the saved position (data work only, no training).

The backup folder belongs to the callback: it refuses a folder holding files it did not write (a user's
`best_model.keras` is never deleted), and at the end of `fit` removes only its own files, then the folder if that
leaves it empty. A backup of a finished run (kept with `delete_checkpoint=False`) makes `fit` train nothing, with a
warning that says so; a backup of another model raises before anything is loaded. Both messages say how to start
fresh: delete the folder or pass another `backup_dir`.
"""

from __future__ import annotations

import json
import os
import re
import warnings

import keras
import numpy as np

from kmtl._keras_internals import set_initial_epoch

METADATA = "backup.json"
FORMAT = "kmtl.BackupAndResume/1"
# Every name the callback writes in its folder (the metadata, its temporary file and one backup's two files).
_OWN_FILE = re.compile(r"backup\.json(\.tmp)?|step-\d+\.(weights\.h5|state\.npz)")


class BackupAndResume(keras.callbacks.Callback):
    """Backs up the training state and resumes an interrupted `fit` exactly where it stopped.

    Every `save_freq` batches (or each epoch) the callback writes the model's weights with the optimizer state, the
    random-generator states of layers and strategies, the metric state of the current epoch and the data position
    (epoch, batch, batches drawn from the current data iterator). Files are written under new names and a small
    JSON file naming them is replaced atomically last, so a process killed at any moment leaves a complete backup.
    When `fit` starts and a backup exists, the state is restored, training starts at the saved epoch and the
    batches of that epoch already trained are drawn from the data and skipped, so an interrupted and resumed run
    ends with the weights of an uninterrupted one when the rest of the run is deterministic (seeds set the same way
    in the new process, `tf.config.experimental.enable_op_determinism()`, data order as in the module docstring).

    Args:
        backup_dir: str or path. Folder of the backup, used by this training run only: a folder that holds files
            the callback did not write is refused, and only the callback's own files are ever deleted.
        save_freq: `"epoch"` or int. Back up after every epoch, or every `save_freq` batches.
        delete_checkpoint: bool. Delete the backup when `fit` ends.

    Attributes:
        restored: dict or None. The position `{"epoch", "batch", "step"}` the last `fit` resumed from.

    Example:

    ```python
    keras.utils.set_random_seed(0)
    backup = kmtl.training.BackupAndResume("/tmp/run1/backup", save_freq=100)
    model.fit(x, y, epochs=10, callbacks=[backup])  # killed, then the same script run again: resumes at the batch
    ```

    Reference:
        Keras team (2023-). `keras.callbacks.BackupAndRestore` (Keras 3.15), whose restore of the epoch this extends.
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint: bool = True):
        super().__init__()
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(
                f"Invalid value for `save_freq`. Expected 'epoch' or a positive int. Received: save_freq={save_freq!r}"
            )
        if not backup_dir:
            raise ValueError(f"Invalid value for `backup_dir`. Expected a folder. Received: backup_dir={backup_dir!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self.restored = None

    # === Restore ===

    def on_train_begin(self, logs=None):
        self._epoch, self._begin, self._step = 0, 0, 0
        self._iterator, self._iterator_batches = None, 0
        self._since_save, self._save_due = 0, False
        self._drain, self._skip_calls, self._metric_state = 0, 0, None
        self._armed, self._skipped, self._set_initial_epoch = False, False, False
        self._ended_epoch = None
        self.restored = None
        _check_own_folder(self.backup_dir)
        metadata = _read_json(os.path.join(self.backup_dir, METADATA))
        if metadata is not None:
            model = self.model
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)  # its variables must exist to be compared, loaded
            self._check_fits(metadata)
        self._wrap_train_function()
        if metadata is not None:
            self._restore(metadata)

    def _start_fresh(self):
        return f"To start fresh, delete {self.backup_dir} or pass another `backup_dir`."

    def _check_fits(self, metadata):
        """Raises before anything is loaded when the backup was taken from another model."""
        saved = metadata.get("shapes")
        shapes = _shapes(self.model)
        if saved is not None and [list(s) for s in saved] != shapes:
            differing = (i for i, (a, b) in enumerate(zip(saved, shapes)) if list(a) != b)
            first = next(differing, min(len(saved), len(shapes)))
            raise ValueError(
                f"The backup in {self.backup_dir} does not fit this model: it holds {len(saved)} weight and optimizer "
                f"variable(s), the model has {len(shapes)}; from variable {first} on the backup has shapes "
                f"{_preview(saved[first:])} and the model {_preview(shapes[first:])} (it was taken from another "
                f"model, or the model changed). {self._start_fresh()}"
            )
        epochs = self.params.get("epochs") if self.params else None
        if epochs is not None and metadata["epoch"] >= epochs and metadata["batch"] == 0:
            warnings.warn(
                f"BackupAndResume: the backup in {self.backup_dir} is of a finished run (epoch {metadata['epoch']} "
                f"of {epochs} done), so this `fit` trains nothing. {self._start_fresh()}",
                stacklevel=2,
            )

    def _restore(self, metadata):
        model = self.model
        try:
            model.load_weights(os.path.join(self.backup_dir, metadata["weights"]))
        except ValueError as error:  # a backup written before the shapes were recorded
            raise ValueError(
                f"The backup in {self.backup_dir} does not fit this model (it was taken from another model, or the "
                f"model changed). {self._start_fresh()} Error: {error}"
            ) from error
        with np.load(os.path.join(self.backup_dir, metadata["state"])) as state:
            _assign(_other_variables(model), state, "rng", "random-generator")
            self._metric_state = {k: state[k] for k in state.files if k.startswith("metric_")}
        steps_per_execution = getattr(model, "steps_per_execution", 1) or 1
        batch = metadata["batch"]
        if batch % steps_per_execution:
            raise ValueError(
                f"The backup in {self.backup_dir} was taken at batch {batch}, which steps_per_execution="
                f"{steps_per_execution} cannot reach; resume with the steps_per_execution it was taken with."
            )
        # The skipped calls count their batches again as they pass.
        self._epoch, self._step = metadata["epoch"], metadata["step"] - batch
        self._skip_calls = batch // steps_per_execution
        self._drain = metadata["iterator_batches"] - batch  # earlier epochs of a one-iterator stream
        # Keras's own mechanism for a restored epoch (what BackupAndRestore sets; `fit` reads it after this hook).
        set_initial_epoch(model, self._epoch)
        self._set_initial_epoch = True
        self.restored = {"epoch": self._epoch, "batch": batch, "step": metadata["step"]}

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._metric_state is not None:
            # `fit` has just reset the metrics; the interrupted epoch's running values come back.
            variables = self.model.metrics_variables
            if len(variables) == len(self._metric_state):
                _assign(variables, self._metric_state, "metric", "metric")
            else:
                warnings.warn(
                    "BackupAndResume: the model's metrics are not built yet, so the resumed epoch's logged metrics "
                    "cover only the batches after the restart (the weights are restored exactly).",
                    stacklevel=2,
                )
            self._metric_state = None

    # === Training steps ===

    def _wrap_train_function(self):
        model = self.model
        inner = getattr(model.train_function, "_kmtl_backup_inner", model.train_function)

        def train_function(iterator):
            return self._train_call(inner, iterator)

        train_function._kmtl_backup_inner = inner
        model.train_function = train_function

    def _train_call(self, inner, iterator):
        if not self._armed:  # a `fit` without this callback (after one that raised): change nothing
            return inner(iterator)
        self._armed, self._skipped = False, False
        if iterator is not self._iterator:  # Keras made a new iterator (each epoch, unless steps_per_epoch is set)
            self._iterator, self._iterator_batches = iterator, 0
        if self._drain:
            for _ in range(self._drain):
                next(iterator)
            self._iterator_batches += self._drain
            self._drain = 0
        if self._save_due:
            self._save()
        if self._skip_calls:
            self._skip_calls -= 1
            self._skipped = True
            for _ in range(getattr(self.model, "steps_per_execution", 1) or 1):
                next(iterator)
            return self.model.get_metrics_result()
        return inner(iterator)

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = batch
        self._armed = True

    def on_train_batch_end(self, batch, logs=None):
        drawn = batch - self._begin + 1
        self._begin = batch + 1
        self._iterator_batches += drawn
        self._step += drawn
        if self._skipped:  # batches trained before the restart: the backup already covers them
            return
        self._since_save += drawn
        if self.save_freq != "epoch" and self._since_save >= self.save_freq:
            self._save_due, self._since_save = True, 0

    def on_epoch_end(self, epoch, logs=None):
        # The save waits for the next step, after every callback's `on_epoch_end` (kmtl's strategy hook included).
        self._begin, self._ended_epoch = 0, epoch
        if self.save_freq == "epoch":
            self._save_due = True

    def on_train_end(self, logs=None):
        model = self.model
        model.train_function = getattr(model.train_function, "_kmtl_backup_inner", model.train_function)
        if self._set_initial_epoch:
            set_initial_epoch(model, None)
        if self.delete_checkpoint:
            _delete_own_files(self.backup_dir)
        elif self._save_due:  # the final state, so that running `fit` again finds nothing left to train
            if self._ended_epoch == self._epoch:
                # Whether a later `fit` continues this iterator is unknown: count from a new one.
                self._epoch, self._begin, self._iterator_batches = self._epoch + 1, 0, 0
            self._save()
        self._iterator = None

    # === Saving ===

    def _save(self):
        """Writes the state before the next step: weights, random and metric state, then the metadata, atomically."""
        self._save_due = False
        os.makedirs(self.backup_dir, exist_ok=True)
        previous = _read_json(os.path.join(self.backup_dir, METADATA))
        tag = f"step-{self._step}"
        weights, state = f"{tag}.weights.h5", f"{tag}.state.npz"
        self.model.save_weights(os.path.join(self.backup_dir, weights), overwrite=True)
        arrays = {f"rng_{i}": np.asarray(v.numpy()) for i, v in enumerate(_other_variables(self.model))}
        arrays.update({f"metric_{i}": np.asarray(v.numpy()) for i, v in enumerate(self.model.metrics_variables)})
        with open(os.path.join(self.backup_dir, state), "wb") as f:
            np.savez(f, **arrays)
        metadata = {"format": FORMAT, "epoch": self._epoch, "batch": self._begin, "step": self._step,
                    "iterator_batches": self._iterator_batches, "weights": weights, "state": state,
                    "shapes": _shapes(self.model)}
        _write_json_atomically(os.path.join(self.backup_dir, METADATA), metadata)
        if previous is not None:
            for name in (previous["weights"], previous["state"]):
                if name not in (weights, state):
                    _remove(os.path.join(self.backup_dir, name))


def _shapes(model):
    """Shapes of what `save_weights` writes, in its order: the model's weights, then the optimizer's variables."""
    optimizer = list(model.optimizer.variables) if model.optimizer is not None else []
    return [[int(d) for d in v.shape] for v in list(model.weights) + optimizer]


def _preview(shapes, limit=4):
    text = ", ".join(str(tuple(s)) for s in shapes[:limit])
    return f"[{text}{', ...' if len(shapes) > limit else ''}]"


def _check_own_folder(folder):
    """Refuses a folder holding files the callback did not write, so that none of them is ever deleted."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise ValueError(
            f"Invalid value for `backup_dir`. Expected a folder for the backup. Received: backup_dir={folder!r}, "
            "which is a file."
        ) from None
    foreign = [name for name in names if not _OWN_FILE.fullmatch(name)]
    if foreign:
        raise ValueError(
            f"Invalid value for `backup_dir`. Expected an empty folder or one holding only a BackupAndResume "
            f"backup: the callback deletes its files when `fit` ends. Received: backup_dir={folder!r}, which holds "
            f"{_preview_names(foreign)}. Give the backup another folder of its own, e.g. "
            f"{os.path.join(folder, 'backup')!r}."
        )


def _preview_names(names, limit=5):
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _delete_own_files(folder):
    """Removes the callback's files, then the folder if nothing else is left in it."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        if _OWN_FILE.fullmatch(name):
            _remove(os.path.join(folder, name))
    try:
        os.rmdir(folder)
    except OSError:  # someone else's file is there: the folder stays
        pass


def _other_variables(model):
    """Variables saved by neither `save_weights` nor the metrics: the random generators' states."""
    taken = {id(v) for v in model.weights} | {id(v) for v in model.metrics_variables}
    return [v for v in model.variables if id(v) not in taken]


def _assign(variables, state, prefix, what):
    keys = sorted((k for k in state if k.startswith(prefix + "_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    if len(keys) != len(variables):
        raise ValueError(
            f"The backup holds {len(keys)} {what} state(s) but the model has {len(variables)}: it was taken from "
            "another model."
        )
    for variable, key in zip(variables, keys):
        variable.assign(state[key])


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_json_atomically(path, data):
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
