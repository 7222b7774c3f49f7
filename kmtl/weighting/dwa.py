"""DWA: dynamic weight average, weights from the rate at which each task's loss fell over the last two epochs."""

from __future__ import annotations

import keras
from keras import ops

from kmtl._checks import check_number
from kmtl.weighting.base import Weighting, register

# Floor for losses that are divided by or put in a log, so a zero loss (e.g. a batch without labels) stays finite.
_EPSILON = 1e-12


@register("dwa")
@keras.saving.register_keras_serializable(package="kmtl")
class DWA(Weighting):
    """Dynamic weight average: weights from the rate at which each task's loss fell over the last two epochs.

    In epoch t the weight of task k is `w_k = K * softmax(r / temperature)_k` with `r_k = L_k(t-1) / L_k(t-2)`, where
    `L_k(e)` is the mean of task k's training loss over the steps of epoch e and K the number of tasks; the weights
    sum to K. Weights are 1 in the first two epochs. Each training step adds its losses to a running sum;
    `on_epoch_end` turns the sum into the epoch mean and shifts the two-epoch history. An epoch without training
    steps leaves the history unchanged, so a second `on_epoch_end` call in a row does nothing. Evaluation uses the
    current weights and leaves the state alone. A task loss of 0 in `L_k(t-2)` (no labels at all in an epoch) is
    floored at 1e-12. The state (`epoch_loss_sum`, `epoch_steps`, `last_epoch_loss`, `previous_epoch_loss`,
    `epochs_seen`) is saved with the model.

    Args:
        temperature: float. Softness of the weights; large values give weights near 1. Must be positive.

    Example:

    >>> from kmtl import Task
    >>> dwa = DWA(temperature=2.0)
    >>> dwa.configure([Task("a", "regression"), Task("b", "binary")])
    >>> for epoch_losses in ([2.0, 1.0], [1.0, 1.0]):
    ...     _ = dwa.combine(ops.convert_to_tensor(epoch_losses))
    ...     dwa.on_epoch_end()
    >>> _, weights = dwa.combine(ops.convert_to_tensor([1.0, 1.0]), training=False)
    >>> [round(float(w), 4) for w in weights]  # r = (0.5, 1): 2 * softmax((0.25, 0.5))
    [0.8756, 1.1244]

    Reference:
        Liu, Johns & Davison (2019). End-to-End Multi-Task Learning with Attention. CVPR.
    """

    def __init__(self, temperature=2.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_number("temperature", temperature)

    def create_state(self, num_tasks):
        tasks = (num_tasks,)
        self.epoch_loss_sum = self._add_state(tasks, "epoch_loss_sum")
        self.epoch_steps = self._add_state((), "epoch_steps")
        self.last_epoch_loss = self._add_state(tasks, "last_epoch_loss")
        self.previous_epoch_loss = self._add_state(tasks, "previous_epoch_loss")
        self.epochs_seen = self._add_state((), "epochs_seen")

    def combine(self, losses, training=True):
        if training:
            self.epoch_loss_sum.assign_add(ops.stop_gradient(losses))
            self.epoch_steps.assign_add(ops.ones((), "float32"))
        ratio = self.last_epoch_loss / ops.maximum(self.previous_epoch_loss, _EPSILON)
        dynamic = self.num_tasks * ops.softmax(ratio / self.temperature)
        weights = ops.where(self.epochs_seen >= 2.0, dynamic, ops.ones_like(dynamic))
        weights = ops.cast(weights, losses.dtype)
        return ops.sum(weights * losses), weights

    def on_epoch_end(self):
        steps = float(ops.convert_to_numpy(self.epoch_steps))
        if steps == 0.0:
            return
        self.previous_epoch_loss.assign(self.last_epoch_loss)
        self.last_epoch_loss.assign(self.epoch_loss_sum / steps)
        self.epochs_seen.assign_add(1.0)
        self.epoch_loss_sum.assign(ops.zeros_like(self.epoch_loss_sum))
        self.epoch_steps.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
