"""Linear-chain CRF output layer: learned transitions, forward-backward marginals and Viterbi decoding.

The maths lives in plain `keras.ops` functions (`crf_log_partition`, `crf_marginals`, `crf_decode`), shared with
the loss in `kmtl.losses.crf`. Every function takes `emissions` `(batch, steps, tags)`, the learned `transitions`
`(tags, tags)` (from tag i to tag j), `start` and `end` scores `(tags,)` and a boolean `mask` `(batch, steps)`.
Masked steps are skipped wherever they are (the chain runs over a sentence's real steps only), so padding changes
nothing; a sentence without real steps has log-partition 0.
"""

from __future__ import annotations

import keras
from keras import ops

# The output's attribute that carries the potentials to `kmtl.losses.CRFLoss` (see `CRF.call`).
POTENTIALS_ATTRIBUTE = "_kmtl_crf_potentials"
# Smallest positive normal float32: a sum of exponentials is clipped here before its log (never log 0).
_TINY = 1.1754944e-38


def _time_major(*tensors):
    return [ops.moveaxis(t, 1, 0) for t in tensors]


def _pack(emissions, real, first):
    """One tensor `(..., tags + 2)` of the emissions and the two step flags.

    Keras's TensorFlow `scan` fails on several sequences whose length is unknown when traced (a sentence batch's
    time axis), so each scan reads one.
    """
    flags = [ops.cast(flag, emissions.dtype)[..., None] for flag in (real, first)]
    return ops.concatenate([emissions, *flags], axis=-1)


def _unpack(inputs):
    return inputs[..., :-2], inputs[..., -2] > 0.5, inputs[..., -1] > 0.5


def _full_mask(emissions, mask):
    if mask is None:
        return ops.ones(ops.shape(emissions)[:2], dtype="bool")
    return ops.cast(mask, "bool")


def _first_steps(mask):
    """True at each sentence's first real step `(batch, steps)`: where the chain starts."""
    count = ops.cumsum(ops.cast(mask, "int32"), axis=1)
    return ops.logical_and(mask, ops.equal(count, 1))


def _forward_backward(emissions, transitions, start, end, mask):
    """Forward and backward log-messages in one scan, and the log-partition.

    The backward recursion is the forward one run over the reversed sentence with the transposed transitions and
    `end` for `start`, so both run as one batch of two chains. Returns `alphas` (forward messages, each including its
    step's emission; a masked step repeats the last real one), `gammas` (backward messages including the emission)
    and `log_z` `(batch,)`.
    """
    reverse = lambda t: ops.flip(t, axis=1)  # noqa: E731
    emissions_2 = ops.stack([emissions, reverse(emissions)])  # (2, batch, steps, tags)
    stack_bool = lambda a, b: ops.cast(ops.stack([ops.cast(a, "int32"), ops.cast(b, "int32")]), "bool")  # noqa: E731
    mask_2 = stack_bool(mask, reverse(mask))
    first_2 = stack_bool(_first_steps(mask), _first_steps(reverse(mask)))
    moves = ops.stack([transitions, ops.transpose(transitions)])  # (2, tags, tags)
    starts = ops.stack([start, end])[:, None]  # (2, 1, tags)
    # logsumexp_i(carry_i + moves_ij) as a matrix product in exp space, each side shifted by its maximum.
    top = ops.max(moves, axis=1, keepdims=True)  # (2, 1, tags)
    exp_moves = ops.exp(moves - top)

    def step(carry, inputs):
        emission, real, first = _unpack(inputs)
        peak = ops.max(carry, axis=-1, keepdims=True)
        total = ops.matmul(ops.exp(carry - peak), exp_moves)
        moved = ops.log(ops.maximum(total, _TINY)) + peak + top + emission
        new = ops.where(first[..., None], starts + emission, moved)
        carry = ops.where(real[..., None], new, carry)
        return carry, carry

    xs = ops.moveaxis(_pack(emissions_2, mask_2, first_2), 2, 0)
    init = ops.zeros_like(emissions_2[:, :, 0])
    last, messages = ops.scan(step, init, xs)
    messages = ops.moveaxis(messages, 0, 2)  # (2, batch, steps, tags)
    alphas, gammas = messages[0], reverse(messages[1])
    started = ops.any(mask, axis=1)
    log_z = ops.where(started, ops.logsumexp(last[0] + end[None], axis=-1), ops.zeros_like(last[0, :, 0]))
    return alphas, gammas, log_z


def _node_log_marginals(emissions, alphas, gammas, log_z):
    return alphas + gammas - emissions - log_z[:, None, None]


def _masked_exp(exponent, keep):
    """exp(exponent) where `keep` is 1, else 0 (without ever computing exp at the others: no inf * 0)."""
    return ops.exp(ops.where(keep > 0, exponent, ops.full_like(exponent, -1e9))) * keep


@ops.custom_gradient
def _log_partition(emissions, transitions, start, end, mask):
    mask = ops.cast(mask, "bool")
    alphas, gammas, log_z = _forward_backward(emissions, transitions, start, end, mask)

    def grad(*args, upstream=None):
        # d log Z / d scores = expected feature counts: node and edge marginals (no backprop through the scan).
        upstream = args[0] if upstream is None else upstream
        real = ops.cast(mask, emissions.dtype)[..., None]
        nodes = _masked_exp(_node_log_marginals(emissions, alphas, gammas, log_z), real) * upstream[:, None, None]
        firsts = ops.cast(_first_steps(mask), emissions.dtype)[..., None]
        lasts = ops.cast(ops.flip(_first_steps(ops.flip(mask, axis=1)), axis=1), emissions.dtype)[..., None]
        follows = real - firsts  # real steps with a real step before them
        # Edge (previous real step -> step t) marginals summed over sentences and steps, as one matrix product in
        # exp space: exp(prev_i + A_ij + gamma_j - log Z) = exp(A_ij - top) exp(prev_i - p) exp(gamma_j - g) scale.
        # The carried alpha at t-1 is the previous real step's.
        previous = ops.pad(alphas[:, :-1], ((0, 0), (1, 0), (0, 0)))
        p = ops.max(previous, axis=-1, keepdims=True)
        g = ops.max(gammas, axis=-1, keepdims=True)
        top = ops.max(transitions)
        exponent = p + g + top - log_z[:, None, None]
        scale = _masked_exp(exponent, follows) * upstream[:, None, None]
        left = ops.reshape(ops.exp(previous - p) * scale, (-1, ops.shape(emissions)[-1]))
        right = ops.reshape(ops.exp(gammas - g), (-1, ops.shape(emissions)[-1]))
        edges = ops.exp(transitions - top) * ops.matmul(ops.transpose(left), right)
        return (
            nodes,
            edges,
            ops.sum(nodes * firsts, axis=(0, 1)),
            ops.sum(nodes * lasts, axis=(0, 1)),
            ops.zeros_like(mask, dtype=emissions.dtype),
        )

    return log_z, grad


def crf_log_partition(emissions, transitions, start, end, mask=None):
    """log Z: the log of the sum over all tag paths of exp(path score), per sentence `(batch,)`.

    Its gradient is computed from the node and edge marginals (exact, and no backpropagation through the scan).
    """
    emissions = ops.convert_to_tensor(emissions)
    mask = _full_mask(emissions, mask)
    return _log_partition(emissions, ops.cast(transitions, emissions.dtype), ops.cast(start, emissions.dtype),
                          ops.cast(end, emissions.dtype), ops.cast(mask, emissions.dtype))


def crf_marginals(emissions, transitions, start, end, mask=None):
    """Per-step tag marginals p(y_t = c | x) `(batch, steps, tags)` by forward-backward (masked steps: 1/tags)."""
    emissions = ops.convert_to_tensor(emissions)
    mask = _full_mask(emissions, mask)
    alphas, gammas, log_z = _forward_backward(emissions, transitions, start, end, mask)
    log_marginals = _node_log_marginals(emissions, alphas, gammas, log_z)
    marginals = ops.exp(ops.where(mask[:, :, None], log_marginals, ops.zeros_like(log_marginals)))
    uniform = ops.full_like(marginals, 1.0) / ops.cast(ops.shape(emissions)[2], marginals.dtype)
    return ops.where(mask[:, :, None], marginals, uniform)


def crf_decode(emissions, transitions, start, end, mask=None):
    """Viterbi decoding: the best tag path `(batch, steps)` int32 (masked steps repeat a neighbour's tag) and its
    score `(batch,)`."""
    mask = _full_mask(emissions, mask)
    batch, tags = ops.shape(emissions)[0], ops.shape(emissions)[2]
    identity = ops.broadcast_to(ops.arange(tags, dtype="int32")[None], (batch, tags))

    def forward(delta, inputs):
        emission, real, first = _unpack(inputs)
        scores = delta[:, :, None] + transitions[None]
        moved = ops.max(scores, axis=1) + emission
        pointers = ops.cast(ops.argmax(scores, axis=1), "int32")
        new = ops.where(first[:, None], start[None] + emission, moved)
        follows = ops.logical_and(real, ops.logical_not(first))
        pointers = ops.where(follows[:, None], pointers, identity)
        # Keras's TensorFlow `scan` stores every step's output with the carry's dtype: pointers travel as floats.
        return ops.where(real[:, None], new, delta), ops.cast(pointers, delta.dtype)

    init = ops.zeros((batch, tags), emissions.dtype)
    delta, pointers = ops.scan(forward, init, _time_major(_pack(emissions, mask, _first_steps(mask)))[0])
    started = ops.any(mask, axis=1)
    final = delta + end[None]
    last = ops.cast(ops.argmax(final, axis=-1), "int32")
    score = ops.where(started, ops.max(final, axis=-1), ops.zeros_like(final[:, 0]))

    def backward(tag, pointer):
        previous = ops.take_along_axis(pointer, tag[:, None], axis=1)[:, 0]
        return previous, tag

    _, path = ops.scan(backward, last, ops.cast(pointers, "int32"), reverse=True)
    return ops.moveaxis(path, 0, 1), score


@keras.saving.register_keras_serializable(package="kmtl")
class CRF(keras.layers.Layer):
    """A linear-chain conditional random field over per-step tag scores.

    Reads emissions `(batch, steps, tags)` (e.g. a Dense layer's linear outputs over a BiLSTM) and learns a tag
    transition matrix with start and end scores. It outputs the per-step tag marginals p(y_t | x)
    `(batch, steps, tags)` (forward-backward), so predictions, metrics and lower-to-higher label embeddings read
    probabilities; `decode` gives the Viterbi path. A Keras mask on the emissions (padding) is honoured and passed
    on to the output, where kmtl's losses and metrics treat masked steps as missing.

    The output carries its potentials for `kmtl.losses.CRFLoss`, which scores whole sentences (the forward
    algorithm, constrained to the observed tags so that unlabelled tokens are marginalised out). Use the two
    together through `Task(..., loss=kmtl.losses.CRFLoss())`, for which `kmtl.heads.task_head` builds this layer.

    Args:
        num_tags: int. Number of tags (>= 2); the emissions' last axis.
        transitions_initializer: initializer of the transition, start and end scores (default zeros).
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    >>> crf = CRF(3)
    >>> tuple(crf(keras.ops.zeros((2, 4, 3))).shape)
    (2, 4, 3)

    Reference:
        Lafferty, McCallum & Pereira (2001). Conditional Random Fields: Probabilistic Models for Segmenting and
        Labeling Sequence Data. ICML.
        Lample, Ballesteros, Subramanian, Kawakami & Dyer (2016). Neural Architectures for Named Entity
        Recognition. NAACL.
    """

    def __init__(self, num_tags: int, transitions_initializer="zeros", **kwargs):
        kwargs.setdefault("dtype", "float32")  # sums over a sentence stay accurate under mixed precision
        super().__init__(**kwargs)
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags < 2:
            raise ValueError(f"Invalid value for `num_tags`. Expected an int >= 2. Received: num_tags={num_tags!r}")
        self.num_tags = num_tags
        self.transitions_initializer = keras.initializers.get(transitions_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.num_tags:
            raise ValueError(
                f"CRF '{self.name}' expects emissions (batch, steps, {self.num_tags}). Received shape {input_shape}."
            )
        init = self.transitions_initializer
        self.transitions = self.add_weight(name="transitions", shape=(self.num_tags, self.num_tags), initializer=init)
        self.start = self.add_weight(name="start", shape=(self.num_tags,), initializer=init)
        self.end = self.add_weight(name="end", shape=(self.num_tags,), initializer=init)

    def potentials(self, emissions):
        """The layer's scores `(emissions, transitions, start, end)` as float32 tensors."""
        emissions = ops.cast(emissions, "float32")
        return emissions, ops.cast(self.transitions, "float32"), ops.cast(self.start, "float32"), \
            ops.cast(self.end, "float32")

    def call(self, inputs, mask=None):
        potentials = self.potentials(inputs)
        outputs = crf_marginals(*potentials, mask)
        # The potentials ride on the output tensor to the task's loss, as Keras's own mask does: the loss must score
        # whole tag paths, which the marginals alone do not determine. `CRFLoss` refuses outputs without them.
        setattr(outputs, POTENTIALS_ATTRIBUTE, (*potentials, mask))
        return outputs

    def decode(self, emissions, mask=None):
        """Viterbi path `(batch, steps)` and its score `(batch,)` for emissions (the layer's inputs)."""
        return crf_decode(*self.potentials(emissions), mask)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_tags": self.num_tags,
            "transitions_initializer": keras.initializers.serialize(self.transitions_initializer),
        }


def crf_potentials(outputs):
    """The `(emissions, transitions, start, end, mask)` a `CRF` layer attached to its outputs, or None."""
    return getattr(outputs, POTENTIALS_ATTRIBUTE, None)
