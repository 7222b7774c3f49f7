"""FAMO: fast adaptive multitask optimisation as a loss-level strategy."""

from __future__ import annotations

import keras
from keras import ops

from kmtl._checks import check_choice, check_number
from kmtl.weighting.base import Weighting, register

# Floor of `L_i - min_i`, as the `+ 1e-8` of the authors' code: keeps log and division finite at the minimum.
_EPSILON = 1e-8
_OPTIMIZERS = ("adam", "sgd")
# Adam's constants for the logits (PyTorch's defaults, used by the authors' code).
_BETA_1, _BETA_2, _ADAM_EPSILON = 0.9, 0.999, 1e-8


@register("famo")
@keras.saving.register_keras_serializable(package="kmtl")
class FAMO(Weighting):
    """Fast adaptive multitask optimisation: weights that make all task losses fall at the same relative rate.

    With logits `xi` (one per task, starting at 0), `z = softmax(xi)` and gaps `D_i = max(L_i - min_i, 1e-8)`, the
    total is `sum_i c * z_i * log(D_i)` with the constant `c = 1 / sum_i(z_i / D_i)`. Its gradient is FAMO's update
    direction `sum_i w_i * grad(L_i)` with `w_i = c * z_i / D_i`, the logged weights, which sum to 1. The total is on
    a log scale and may be negative.

    The logits learn from how much each log-loss fell: with `delta = log D(previous) - log D(current)`, the gradient
    of `z . delta` with respect to `xi` is `g = z * (delta - z . delta)`, and `xi` moves against `g + gamma * xi`.
    `logits_optimizer="sgd"` takes the paper's plain step `xi -= learning_rate * (g + gamma * xi)` (Algorithm 1);
    `"adam"` (default, as in the authors' code, which the default rates come from) feeds `g + gamma * xi` to Adam
    (beta_1 0.9, beta_2 0.999, epsilon 1e-8, bias-corrected).

    kmtl's choice: the paper measures the loss again on the same batch after the parameter update; kmtl uses the
    losses of the next training step instead (another batch, no extra forward pass). Each training step first
    updates `xi` from the previous step's losses and its own, then weights its losses with the new `z`; the first
    step only records its losses. The decrease therefore mixes progress with batch-to-batch noise, which averages out
    over steps. Evaluation uses the current `z` and changes nothing. The state (`logits`, `previous_losses`,
    `has_previous` and, for Adam, `logits_m`, `logits_v`, `logits_steps`) is non-trainable and saved with the model.

    Args:
        gamma: float. Decay of the logits towards 0 (the paper's regularisation coefficient). Non-negative.
        learning_rate: float. Step size of the logits. Positive.
        min_losses: float or list of floats (one per task). Lower bounds `min_i` of the task losses (0 for the
            usual non-negative losses).
        logits_optimizer: str. `"adam"` or `"sgd"`, see above.

    Example:

    >>> from kmtl import Task
    >>> famo = FAMO()
    >>> famo.configure([Task("a", "regression"), Task("b", "binary")])
    >>> total, weights = famo.combine(ops.convert_to_tensor([4.0, 1.0]))
    >>> [round(float(w), 4) for w in weights]  # z = (0.5, 0.5): c = 1.6, w = c * z / L
    [0.2, 0.8]

    Reference:
        Liu, Feng, Stone & Liu (2023). FAMO: Fast Adaptive Multitask Optimization. NeurIPS.
    """

    def __init__(self, gamma=0.01, learning_rate=0.025, min_losses=0.0, logits_optimizer="adam", **kwargs):
        super().__init__(**kwargs)
        self.gamma = check_number("gamma", gamma, allow_zero=True)
        self.learning_rate = check_number("learning_rate", learning_rate)
        if isinstance(min_losses, (list, tuple)):
            self.min_losses = [
                check_number("min_losses", m, allow_zero=True, allow_negative=True) for m in min_losses
            ]
        else:
            self.min_losses = check_number("min_losses", min_losses, allow_zero=True, allow_negative=True)
        self.logits_optimizer = check_choice("logits_optimizer", logits_optimizer, _OPTIMIZERS)

    def create_state(self, num_tasks):
        if isinstance(self.min_losses, list) and len(self.min_losses) != num_tasks:
            raise ValueError(
                f"Invalid value for `min_losses`. Expected one float or {num_tasks} (one per task). "
                f"Received: min_losses={self.min_losses}"
            )
        tasks = (num_tasks,)
        self.logits = self._add_state(tasks, "logits")
        self.previous_losses = self._add_state(tasks, "previous_losses")
        self.has_previous = self._add_state((), "has_previous")
        if self.logits_optimizer == "adam":
            self.logits_m = self._add_state(tasks, "logits_m")
            self.logits_v = self._add_state(tasks, "logits_v")
            self.logits_steps = self._add_state((), "logits_steps")

    def _gaps(self, losses):
        floor = ops.convert_to_tensor(self.min_losses, losses.dtype)
        return ops.maximum(losses - floor, _EPSILON)

    def combine(self, losses, training=True):
        observed = ops.stop_gradient(losses)
        logits = self._update_logits(observed) if training else ops.convert_to_tensor(self.logits)
        z = ops.cast(ops.softmax(logits), losses.dtype)
        gaps = self._gaps(observed)
        c = 1.0 / ops.sum(z / gaps)
        total = ops.sum(c * z * ops.log(self._gaps(losses)))
        return total, c * z / gaps

    def _update_logits(self, losses):
        """Moves the logits from the previous step's losses to these, records these; returns the new logits."""
        xi = ops.convert_to_tensor(self.logits)
        z = ops.softmax(xi)
        delta = ops.log(self._gaps(self.previous_losses)) - ops.log(self._gaps(losses))
        gradient = z * (delta - ops.sum(z * delta)) + self.gamma * xi
        active = self.has_previous > 0.0
        if self.logits_optimizer == "sgd":
            step = self.learning_rate * gradient
        else:
            step = self._adam_step(gradient, active)
        new_xi = ops.where(active, xi - step, xi)
        self.logits.assign(new_xi)
        self.previous_losses.assign(losses)
        self.has_previous.assign(1.0)
        return new_xi

    def _adam_step(self, gradient, active):
        """Adam's step for `gradient`; its moments and count advance only when `active`."""
        t = self.logits_steps + 1.0
        m = _BETA_1 * self.logits_m + (1.0 - _BETA_1) * gradient
        v = _BETA_2 * self.logits_v + (1.0 - _BETA_2) * ops.square(gradient)
        m_hat = m / (1.0 - ops.power(_BETA_1, t))
        v_hat = v / (1.0 - ops.power(_BETA_2, t))
        self.logits_m.assign(ops.where(active, m, self.logits_m))
        self.logits_v.assign(ops.where(active, v, self.logits_v))
        self.logits_steps.assign(ops.where(active, t, self.logits_steps))
        return self.learning_rate * m_hat / (ops.sqrt(v_hat) + _ADAM_EPSILON)

    def get_config(self):
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "learning_rate": self.learning_rate,
            "min_losses": self.min_losses,
            "logits_optimizer": self.logits_optimizer,
        }
