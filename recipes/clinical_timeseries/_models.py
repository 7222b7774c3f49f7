"""Networks of the clinical time-series recipe: channel-wise LSTM and plain LSTM trunks, heads and read-outs.

Both networks read `features` `(batch, steps, F)` and `mask` `(batch, steps)` (1 at real steps, 0 at padding). The
mask goes into every recurrent layer's `mask` argument, so padded steps never change the state carried to real
steps, and predictions at real steps do not depend on how much padding follows. Recurrent layers run forward in
time by default, so a prediction at step t reads steps 0..t only.

Reference:
    Harutyunyan, Khachatrian, Kale, Ver Steeg & Galstyan (2019). Multitask learning and benchmarking with clinical
    time series data. Scientific Data 6.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import numpy as np
from keras import ops

import kmtl
from kmtl.layers import ChannelGroups, GroupedLSTM, SequenceMean, SequenceReadout

MODELS = ("channelwise", "lstm")
STAY_READOUTS = ("last", "last_and_mean", "last_mean_and_inputs")
PER_STEP_SUFFIX = "_per_step"


def channelwise_trunk(features, mask, channel_groups: Mapping[str, Sequence[int]], *, channel_units: int,
                      shared_units: int, dropout: float, bidirectional: bool):
    """Channel-wise LSTM: each variable's channels (its values and its measured-mask) through its own small LSTM
    (all run in one `GroupedLSTM` loop), then one shared LSTM over their concatenation.

    Returns per-step features `(batch, steps, shared_units)`.
    """
    if dropout:
        # Keras LSTM's input dropout: one mask per sequence and channel, the same at every step.
        features = keras.layers.SpatialDropout1D(dropout, name="channel_dropout")(features)
    groups = ChannelGroups([list(g) for g in channel_groups.values()], name="channel_groups")(features)
    if bidirectional:
        half = max(channel_units // 2, 1)
        forward = GroupedLSTM(half, name="channel_lstms_forward")(groups, mask=mask)
        backward = GroupedLSTM(half, go_backwards=True, name="channel_lstms_backward")(groups, mask=mask)
        per_variable = keras.layers.Concatenate(name="channel_lstms")([forward, backward])
    else:
        per_variable = GroupedLSTM(channel_units, name="channel_lstms")(groups, mask=mask)
    shared = keras.layers.LSTM(shared_units, return_sequences=True, dropout=dropout, name="shared_lstm")
    return shared(per_variable, mask=mask)


def lstm_trunk(features, mask, *, units: int, depth: int, dropout: float, bidirectional: bool):
    """The plain LSTM baseline: `depth` stacked LSTMs over all channels. Returns `(batch, steps, units)`."""
    x = features
    for i in range(1, depth + 1):
        if bidirectional:
            rnn = keras.layers.Bidirectional(
                keras.layers.LSTM(max(units // 2, 1), return_sequences=True, dropout=dropout), name=f"lstm_{i}"
            )
        else:
            rnn = keras.layers.LSTM(units, return_sequences=True, dropout=dropout, name=f"lstm_{i}")
        x = rnn(x, mask=mask)
    return x


def with_deep_supervision(tasks: Sequence[kmtl.Task], coefficient: float) -> list[kmtl.Task]:
    """The tasks to train: every whole-stay task and, when `coefficient` > 0, its per-step copy.

    As the benchmark's target replication: a whole-stay task keeps `(1 - coefficient)` of its loss weight and an
    auxiliary per-step copy `<task>_per_step` (trained, never exported) gets `coefficient` of it.
    """
    if coefficient == 0:
        return list(tasks)
    out = []
    for task in tasks:
        if task.per_step:
            out.append(task)
            continue
        out.append(_replace(task, loss_weight=task.loss_weight * (1.0 - coefficient)))
        out.append(per_step_copy(task, auxiliary=True, loss_weight=task.loss_weight * coefficient))
    return out


def per_step_copy(task: kmtl.Task, **changes) -> kmtl.Task:
    """A per-step twin of a whole-stay task, named `<task>_per_step`."""
    return _replace(task, name=task.name + PER_STEP_SUFFIX, per_step=True, **changes)


def attach_heads(tasks: Sequence[kmtl.Task], sequence, mask, readout_steps: Mapping[str, int],
                 stay_readout: str = "last", inputs=None) -> dict:
    """One output per task. Per-step tasks: a head at every step. Whole-stay tasks: the same kind of per-step head
    (shared with its `<task>_per_step` copy when deep supervision trains one), read at `readout_steps[task]` or at
    the last real step.

    With `stay_readout="last_and_mean"`, a whole-stay task read at the end of the stay (no read-out step, e.g.
    `phenotype`) instead gets a head on the last real step's features beside their mean over the real steps, so
    signs seen early in the stay reach it directly (its deep-supervision copy keeps its own per-step head). With
    `"last_mean_and_inputs"` that head also reads `inputs` (the normalised features) pooled over the real steps:
    each channel's mean and mean square, i.e. its level and spread over the stay.
    """
    names = {t.name for t in tasks}
    outputs, per_step_heads = {}, {}
    for task in tasks:
        if task.per_step:
            outputs[task.name] = per_step_heads[task.name] = kmtl.heads.task_head(task, sequence)
    for task in tasks:
        if task.per_step:
            continue
        step = readout_steps.get(task.name)
        if stay_readout != "last" and step is None:
            last = SequenceReadout(None, name=f"{task.name}_last")([sequence, mask])
            mean = SequenceMean(name=f"{task.name}_mean")([sequence, mask])
            parts = [last, mean]
            if stay_readout == "last_mean_and_inputs":
                squares = keras.layers.Multiply(name=f"{task.name}_input_squares")([inputs, inputs])
                parts.append(SequenceMean(name=f"{task.name}_input_mean")([inputs, mask]))
                parts.append(SequenceMean(name=f"{task.name}_input_square_mean")([squares, mask]))
            summary = keras.layers.Concatenate(name=f"{task.name}_summary")(parts)
            outputs[task.name] = kmtl.heads.task_head(task, summary)
            continue
        twin = task.name + PER_STEP_SUFFIX
        head = per_step_heads[twin] if twin in names else kmtl.heads.task_head(per_step_copy(task), sequence)
        outputs[task.name] = SequenceReadout(step, name=task.name)([head, mask])
    return outputs


def normalization_layer(normalizer, num_features: int):
    """The model's first layer: the normaliser's `Normalization` (training statistics), or identity statistics."""
    if normalizer is None:
        return keras.layers.Normalization(
            axis=-1, mean=np.zeros(num_features, "float32"), variance=np.ones(num_features, "float32"), name="normalize"
        )
    if normalizer.num_features != num_features:
        raise ValueError(
            f"Invalid value for `normalizer`: it was fitted on {normalizer.num_features} channels but the model "
            f"reads {num_features}. Received: num_features={num_features}"
        )
    return normalizer.layer(name="normalize")


def check_bidirectional(tasks: Sequence[kmtl.Task], readout_steps: Mapping[str, int], deep_supervision: float):
    """A backward-in-time layer lets a prediction at step t read steps after t: allowed only where every output is
    read at the end of the sequence anyway."""
    early = [t.name for t in tasks if t.per_step or readout_steps.get(t.name) is not None]
    if early or deep_supervision:
        raise ValueError(
            "Invalid value for `bidirectional`. A bidirectional layer would let predictions read later time steps: "
            f"tasks {early} predict before the end of the sequence"
            + (" and deep supervision predicts at every step" if deep_supervision else "")
            + ". Use it only for whole-stay tasks read at the last step. Received: bidirectional=True"
        )


def _replace(task: kmtl.Task, **changes) -> kmtl.Task:
    config = task.get_config()
    config.update(changes)
    return kmtl.Task.from_config(config)

