"""GradDrop: gradient sign dropout."""

from __future__ import annotations

import keras
from keras import ops

from kmtl._checks import is_number
from kmtl.weighting._gradients import SavesRandomState
from kmtl.weighting.base import GradientWeighting, register


@register("graddrop")
@keras.saving.register_keras_serializable(package="kmtl")
class GradDrop(SavesRandomState, GradientWeighting):
    """Gradient sign dropout: per coordinate, keeps only the positive or only the negative task gradients.

    With the sign purity `P = 0.5 (1 + sum_i g_i / sum_i |g_i|)` of every coordinate and a uniform draw `U` per
    coordinate and step, task i keeps its component where `P > U` and it is positive, or `P < U` and it is
    negative: the mask is `M_i`. The direction is `sum_i (l_i + (1 - l_i) M_i) g_i` with leak `l_i` (l = 1: task i
    is never dropped; l = 0: pure GradDrop). Where all gradients agree in sign, nothing is dropped and the direction
    is the SUM of the gradients. The direction is not a combination of the rows, so the logged weights are ones.

    The paper applies GradDrop to gradients of activations, summing them over the batch before computing `P`;
    kmtl computes `P` per column of the gradient matrix (shared parameters, or with `rep_grad=True` the entries of
    the shared representation), the paper's variant for inputs that are not batch-separated. The uniform draws use
    the Philox generator explicitly (`_uniform`): without XLA they are the numbers `keras.random.uniform` draws;
    under XLA they cost ~10 ms per million shared parameters on 2 CPU cores, where XLA's default generator
    (ThreeFry) took ~1 s.

    Args:
        leak: float in [0, 1], or a list of one such float per task.
        seed: int or None. Seed of the uniform draws.
        rep_grad: bool. Aggregate gradients of the shared representation.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=GradDrop(leak=0.0, seed=1))  # doctest: +SKIP

    Reference:
        Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov (2020). Just Pick a Sign: Optimizing Deep Multitask
        Models with Gradient Sign Dropout. NeurIPS.
    """

    def __init__(self, leak=0.0, seed=None, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        values = leak if isinstance(leak, (list, tuple)) else [leak]
        if not values or not all(is_number(v) and 0.0 <= v <= 1.0 for v in values):
            raise ValueError(
                f"Invalid value for `leak`. Expected a float in [0, 1] or a list of them. Received: leak={leak!r}"
            )
        self.leak = [float(v) for v in leak] if isinstance(leak, (list, tuple)) else float(leak)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def create_state(self, num_tasks):
        if isinstance(self.leak, list) and len(self.leak) != num_tasks:
            raise ValueError(
                f"`leak` has {len(self.leak)} values for {num_tasks} tasks {list(self.task_names)}. Expected one "
                f"per task. Received: leak={self.leak}"
            )

    def aggregate(self, grads, losses):
        t = grads.shape[0]
        leak = self.leak if isinstance(self.leak, list) else [self.leak] * t
        leak = ops.convert_to_tensor(leak, grads.dtype)[:, None]
        purity = 0.5 * (1.0 + ops.sum(grads, axis=0) / ops.maximum(ops.sum(ops.abs(grads), axis=0), 1e-37))
        draw = _uniform(purity.shape, grads.dtype, self.seed_generator)
        keep = ops.logical_or(
            ops.logical_and(purity > draw, grads > 0), ops.logical_and(purity < draw, grads < 0)
        )
        mask = leak + (1.0 - leak) * ops.cast(keep, grads.dtype)
        return ops.sum(mask * grads, axis=0), ops.ones_like(losses)

    def get_config(self):
        return {**super().get_config(), "leak": self.leak, "seed": self.seed}


def _uniform(shape, dtype, seed_generator):
    """`keras.random.uniform(shape, dtype=dtype, seed=seed_generator)`, drawn with Philox on every path.

    Keras's TensorFlow backend calls `tf.random.stateless_uniform` with `alg="auto_select"`, which is Philox
    without XLA (so these are the same numbers) and ThreeFry under XLA on CPU, ~100x slower (measured on 2 cores:
    951 ms against 10 ms per million draws). Under XLA the numbers differ from the non-XLA ones either way.
    """
    if keras.backend.backend() != "tensorflow":
        return keras.random.uniform(shape, dtype=dtype, seed=seed_generator)
    import tensorflow as tf

    seed = seed_generator.next()
    if seed.dtype != tf.int32:
        # As Keras casts the generator's int64 state for `tf.random.stateless_*`.
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    return tf.random.stateless_uniform(shape, seed=seed, dtype=dtype, alg="philox")
