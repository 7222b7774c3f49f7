"""Learning-rate schedules Keras lacks: the annealed rate of domain-adversarial training, and its SGD.

In `kmtl.training` (not in a recipe) so that a saved model whose optimizer holds one loads after `import kmtl`.
"""

from __future__ import annotations

import keras
from keras import ops

OPTIMIZERS = ("adam", "sgd")
# Ganin & Lempitsky (2015), section 5: mu_p = mu_0 / (1 + ALPHA p) ** BETA, momentum 0.9.
ALPHA, BETA, MOMENTUM = 10.0, 0.75, 0.9


@keras.saving.register_keras_serializable(package="kmtl")
class AnnealedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate `initial / (1 + alpha p) ** beta` over training progress `p = min(step / steps, 1)`.

    Args:
        initial: float. The rate at the first step (`mu_0`).
        steps: int. Train steps of the whole run (p = 1 at the last).
        alpha, beta: float. The annealing's speed and power (the paper's 10 and 0.75).

    Example:

    >>> schedule = AnnealedLearningRate(0.01, steps=100)
    >>> round(float(schedule(100)), 6)  # 0.01 / 11 ** 0.75
    0.001656

    Reference:
        Ganin & Lempitsky (2015). Unsupervised Domain Adaptation by Backpropagation. ICML.
    """

    def __init__(self, initial, steps, alpha=ALPHA, beta=BETA):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"Invalid value for `steps`. Expected a positive int. Received: steps={steps!r}")
        self.initial, self.steps, self.alpha, self.beta = float(initial), steps, float(alpha), float(beta)

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / self.steps, 1.0)
        return self.initial / ops.power(1.0 + self.alpha * progress, self.beta)

    def get_config(self):
        return {"initial": self.initial, "steps": self.steps, "alpha": self.alpha, "beta": self.beta}


def make_optimizer(optimizer: str, learning_rate: float, steps: int):
    """`"adam"`: Adam at `learning_rate`; `"sgd"`: SGD with momentum 0.9 and `AnnealedLearningRate(learning_rate,
    steps)`, the paper's training."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"Invalid value for `optimizer`. Expected one of {OPTIMIZERS}. Received: optimizer={optimizer!r}"
        )
    if optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.SGD(AnnealedLearningRate(learning_rate, steps), momentum=MOMENTUM)
