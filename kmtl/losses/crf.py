"""CRF loss: the negative log-likelihood of a sentence's observed tags, unlabelled tokens marginalised out.

A sentence's loss is `log Z - log Z_observed`, where `log Z` sums over every tag path (the forward algorithm) and
`log Z_observed` over the paths that agree with the observed tags (the same algorithm with the other tags' scores
set to -inf at labelled steps). With every tag observed it is the usual CRF loss; with some missing, those tokens
are summed over, not dropped or guessed, which is what partially annotated corpora mixed in one batch need.

Reference:
    Tsuboi, Kashima, Mori, Oda & Matsumoto (2008). Training Conditional Random Fields Using Incomplete
    Annotations. COLING.
"""

from __future__ import annotations

import keras
from keras import ops

from kmtl.layers.crf import crf_log_partition, crf_potentials

# Score of a tag a labelled step rules out: exp() of it is 0, and sums with it stay finite (no inf - inf).
_RULED_OUT = -1e9


def crf_log_likelihood(emissions, transitions, start, end, tags, mask=None, observed=None):
    """log p(observed tags | x) of each sentence `(batch,)`, summing over the tags of unobserved tokens.

    Args:
        emissions: float tensor `(batch, steps, num_tags)`.
        transitions: float tensor `(num_tags, num_tags)`, from tag i to tag j.
        start, end: float tensors `(num_tags,)`.
        tags: int tensor `(batch, steps)`: tag ids (any value where not observed).
        mask: bool tensor `(batch, steps)`: the real (unpadded) steps; None: all.
        observed: bool tensor `(batch, steps)`: the steps whose tag is known; None: every real step.

    Returns:
        Tensor `(batch,)` of the emissions' float dtype; 0 for a sentence without observed tags.
    """
    emissions = ops.convert_to_tensor(emissions)
    if not keras.backend.is_float_dtype(emissions.dtype):
        emissions = ops.cast(emissions, "float32")
    num_tags = ops.shape(emissions)[-1]
    tags = ops.cast(tags, "int32")
    if observed is None:
        observed = ops.ones(ops.shape(tags), "bool") if mask is None else ops.cast(mask, "bool")
    observed = ops.cast(observed, "bool")
    safe_tags = ops.where(observed, tags, ops.zeros_like(tags))
    allowed = ops.logical_or(ops.one_hot(safe_tags, num_tags, dtype="bool"), ops.logical_not(observed)[..., None])
    constrained = ops.where(allowed, emissions, ops.full_like(emissions, _RULED_OUT))
    # One forward pass over both: the batch, then its constrained copy.
    both = ops.concatenate([emissions, constrained], axis=0)
    both_mask = None if mask is None else ops.concatenate([mask, mask], axis=0)
    log_z = crf_log_partition(both, transitions, start, end, both_mask)
    batch = ops.shape(emissions)[0]
    return log_z[batch:] - log_z[:batch]


@keras.saving.register_keras_serializable(package="kmtl")
class CRFLoss(keras.losses.Loss):
    """Negative log-likelihood of a linear-chain CRF, for a per-token task whose head is a `kmtl.layers.CRF`.

    Declare it on the task, `Task("ner", "multiclass", num_classes=9, per_step=True, loss=CRFLoss())`, and
    `kmtl.heads.task_head` (hence every builder) gives the task a CRF head. Within a `MultiTaskModel` a
    sentence's loss is shared equally among its labelled tokens, so the task's loss is the mean over labelled
    tokens, like a softmax per-token task's, and sentences without labels contribute nothing. Tokens whose label is
    the task's `missing` marker inside a labelled sentence are marginalised out; padded steps (the Keras mask)
    are not part of the sentence.

    Called directly, `loss(y_true, y_pred)` returns the mean negative log-likelihood per sentence, reading
    negative tag ids as missing.

    Args:
        name: str. Loss name.
        reduction: `"sum_over_batch_size"` (default) or `"mean"`, as for any Keras loss.

    Reference:
        Lafferty, McCallum & Pereira (2001). Conditional Random Fields. ICML.
    """

    # kmtl's masked loss calls `token_values` with the unflattened labels and outputs (see `kmtl.losses.masked`).
    sequence_level = True

    def __init__(self, name: str = "crf_loss", reduction: str = "sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.convert_to_tensor(y_true), ops.shape(y_pred)[:2])
        observed = ops.greater_equal(y_true, 0)
        potentials = _potentials(y_pred, "CRFLoss")
        mask = potentials[4]
        if mask is not None:
            observed = ops.logical_and(observed, ops.cast(mask, "bool"))
        return -crf_log_likelihood(*potentials[:4], y_true, mask, observed)

    def token_values(self, y_true, y_pred, present, task_name: str = ""):
        """Each sentence's negative log-likelihood shared among its present tokens, `(batch, steps)`.

        Args:
            y_true: tag ids `(batch, steps)` or `(batch, steps, 1)`, missing ones filled with any valid id.
            y_pred: a `CRF` layer's output.
            present: float `(batch, steps)`: 1 where the tag is observed and the step is real.
        """
        emissions, transitions, start, end, mask = _potentials(y_pred, f"Task '{task_name}'")
        tags = ops.reshape(ops.convert_to_tensor(y_true), ops.shape(present))
        observed = ops.greater(present, 0)
        nll = -crf_log_likelihood(emissions, transitions, start, end, tags, mask, observed)
        counts = ops.sum(ops.cast(observed, "float32"), axis=1)
        share = nll / ops.maximum(counts, 1.0)
        return ops.where(observed, share[:, None], ops.zeros_like(present))


def _potentials(y_pred, who: str):
    potentials = crf_potentials(y_pred)
    if potentials is None:
        raise ValueError(
            f"{who}: `CRFLoss` scores the output of a `kmtl.layers.CRF` layer (built by `kmtl.heads.task_head` for "
            "a task with loss=CRFLoss()), which carries the tag scores the loss needs. Received an output without "
            f"them: {type(y_pred).__name__} of shape {tuple(getattr(y_pred, 'shape', ()))}."
        )
    return potentials
