"""Label checks on every batch of data that Keras reads batch by batch: `tf.data`, Python generators, `PyDataset`.

Arrays (numpy, pandas, tensors) are checked in full before training (`kmtl.tasks.fit_checks`); a dataset or generator can
only be checked as it is read. Where the checks run, and why there:

- `tf.data.Dataset`: a `map` after the user's pipeline adds, per task, one vectorised range test of the batch's
  labels and a `tf.cond` that only on failure gathers the first bad value and raises an assertion whose message
  names the task, what it expects, the value and the batch. The map runs in the input pipeline, outside the train
  step, so it works the same with `jit_compile` on or off (XLA compiles `tf.debugging.Assert` and
  `check_numerics` away silently inside the step, measured on TF 2.21), under `tf.distribute` (the check is in the
  dataset that Keras distributes) and for the gradient-level train step, and the error comes before the bad batch
  reaches the model, so no weight sees it. It runs with `num_parallel_calls`, i.e. ahead of the step.
  `benchmarks/label_checks.py` measures the cost.
- Python generators and `keras.utils.PyDataset`s: each batch's labels are checked with numpy as it is produced
  (`Task.validate_labels`: keys, shapes, dtypes and values).

`MultiTaskModel.fit`/`evaluate` wrap the data with `checked_batches` and run Keras inside `named_batch_errors`,
which turns the TensorFlow error raised by a failed check back into a `ValueError` carrying only the message.
"""

from __future__ import annotations

import contextlib
import re
import types

import keras
import numpy as np
import tensorflow as tf

from kmtl.tasks.labels import check_label_keys

# Every message of a failed per-batch check ends with this, so it can be found in a TensorFlow error's text.
_END = " [kmtl label check]"
# TensorFlow's assertion text escapes the quotes: `Task \\'age\\'`.
_MESSAGE = re.compile(r"(Invalid data in batch [^\n]*?)" + re.escape(_END))


def checked_batches(model, data, where: str):
    """`data` wrapped so that every batch's labels are checked against the model's tasks as it is read.

    Args:
        model: a `MultiTaskModel`.
        data: what `fit`/`evaluate` received as `x` (or `validation_data`): a `tf.data.Dataset`, a generator or a
            `PyDataset` is wrapped; anything else (arrays, checked in full beforehand) is returned as is.
        where: str. How messages name the data, e.g. `"the training data"`.
    """
    tasks = list(model.tasks)
    if isinstance(data, tf.data.Dataset):
        return _checked_dataset(data, tasks, where)
    if isinstance(data, types.GeneratorType):
        return _checked_generator(data, tasks, where)
    if isinstance(data, keras.utils.PyDataset):
        return _CheckedPyDataset(data, tasks, where)
    return data


@contextlib.contextmanager
def named_batch_errors():
    """Re-raises a TensorFlow error caused by a failed per-batch label check as a `ValueError` with its message."""
    try:
        yield
    except (tf.errors.OpError, ValueError) as error:
        found = _MESSAGE.search(str(error))
        if found is None:
            raise
        raise ValueError(found.group(1).replace("\\'", "'")) from None


# === tf.data ===


def _checked_dataset(dataset, tasks, where):
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2 or not isinstance(spec[1], dict):
        return dataset  # the up-front checks reject this shape of data

    def check(batch, element):
        labels = dict(element[1])
        checked = [t for t in tasks if isinstance(labels.get(t.name), tf.Tensor)]
        bad = {t.name: invalid_label_entries(t, labels[t.name]) for t in checked}
        checked = [t for t in checked if bad[t.name] is not None]
        if not checked:
            return element
        # One reduction per task and a single `cond` per batch; the message is built only when a check fails.
        ok = tf.logical_not(tf.stack([tf.reduce_any(bad[t.name]) for t in checked]))
        passed = tf.cond(tf.reduce_all(ok), lambda: tf.constant(True), lambda: _fail(checked, labels, bad, ok, batch, where))
        with tf.control_dependencies([passed]):
            labels = {name: tf.identity(value) if isinstance(value, tf.Tensor) else value for name, value in labels.items()}
        return (element[0], labels, *element[2:])

    return dataset.enumerate().map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _fail(tasks, labels, bad, ok, batch, where):
    """An assertion that fails, naming the first task with an invalid entry, that entry's value and the batch."""
    messages = []
    for task in tasks:
        values = tf.boolean_mask(tf.reshape(labels[task.name], [-1]), tf.reshape(bad[task.name], [-1]))
        first = tf.concat([values, tf.zeros([1], values.dtype)], axis=0)[0]  # (0 for a task that passed: unused)
        messages.append(
            tf.strings.format(
                f"Invalid data in batch {{}} of {where}: Task '{task.name}' ({task.kind}) expects "
                f"{task.label_expectation}. Received: {{}}.{_END}",
                (batch, first),
            )
        )
    message = tf.gather(tf.stack(messages), tf.argmin(tf.cast(ok, tf.int32)))
    with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
        return tf.constant(False)


def invalid_label_entries(task, labels):
    """Boolean tensor, True at present label entries outside the task's range; None when none can be invalid.

    Binary and multilabel entries must lie in [0, 1], multiclass entries be class ids, regression entries be finite;
    entries equal to the task's missing marker are left out.
    """
    labels = tf.convert_to_tensor(labels)
    if task.kind == "regression":
        if not labels.dtype.is_floating:
            return None  # integers are finite, and cannot hold a NaN marker
        bad = tf.logical_not(tf.math.is_finite(labels))
        if task.missing_is_nan:
            return tf.logical_and(bad, tf.logical_not(tf.math.is_nan(labels)))
        return tf.logical_and(bad, tf.not_equal(labels, tf.cast(task.missing, labels.dtype)))
    values = tf.cast(labels, tf.float32)
    highest = task.num_classes - 1 if task.kind == "multiclass" else 1
    valid = tf.logical_and(values >= 0.0, values <= float(highest))  # False for NaN
    if task.kind == "multiclass" and labels.dtype.is_floating:
        valid = tf.logical_and(valid, tf.equal(values, tf.round(values)))
    present = tf.not_equal(values, float(task.missing))
    return tf.logical_and(present, tf.logical_not(valid))


# === Python generators and PyDataset ===


def _check_numpy_batch(tasks, element, index, where):
    if not isinstance(element, tuple) or len(element) < 2:
        return
    try:
        labels = element[1]
        check_label_keys(tasks, labels)
        for task in tasks:
            task.validate_labels(np.asarray(labels[task.name]), num_examples=None)
    except ValueError as error:
        raise ValueError(f"Invalid data in batch {index} of {where}: {error}{_END}") from None


def _checked_generator(generator, tasks, where):
    for index, element in enumerate(generator):
        _check_numpy_batch(tasks, element, index, where)
        yield element


class _CheckedPyDataset(keras.utils.PyDataset):
    """A `PyDataset` that checks the labels of each batch it returns from the dataset it wraps."""

    def __init__(self, inner, tasks, where):
        super().__init__(
            workers=inner.workers, use_multiprocessing=inner.use_multiprocessing, max_queue_size=inner.max_queue_size
        )
        self.inner, self.tasks, self.where = inner, tasks, where

    def __len__(self):
        return len(self.inner)

    @property
    def num_batches(self):
        return self.inner.num_batches

    def __getitem__(self, index):
        element = self.inner[index]
        _check_numpy_batch(self.tasks, element, index, self.where)
        return element

    def on_epoch_begin(self):
        self.inner.on_epoch_begin()

    def on_epoch_end(self):
        self.inner.on_epoch_end()
