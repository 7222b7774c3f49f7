"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

import time

import keras


class StepTimes(keras.callbacks.Callback):
    """Appends to `steps` the seconds between consecutive training batches' ends of each `fit` (the first batch,
    which may trace, is not counted)."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def on_train_begin(self, logs=None):
        self.stamps = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.steps.extend(b - a for a, b in zip(self.stamps, self.stamps[1:]))
