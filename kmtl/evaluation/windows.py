"""Input windows: the leading steps of its sequence inputs that a whole-sequence task's prediction may read.

A model that predicts a whole-sequence task at a fixed step (e.g. in-hospital mortality at hour 48 of an ICU stay,
`kmtl.layers.SequenceReadout(step=47)`) reads only the steps up to it, when its layers run forward in time. A
reference model fitted for that task on the whole sequence would read what the model may not: the
deterioration before a death after hour 48, or the stay's length. `input_windows(model)` finds such tasks in a
model's graph, and `classical_scores(..., windows=...)` cuts the inputs to the window for them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def input_windows(model) -> dict[str, dict[str, int]]:
    """Each whole-sequence task that `model` reads at fixed steps only, with the steps of each input it may read.

    A task's window is found where its output reads the sequence only through `kmtl.layers.SequenceReadout`
    layers with a fixed `step` (each called once): it covers steps `0..max(step)` of every model input whose second
    axis has the read-out sequence's length (a sequence input or its mask: both `None` for variable length, or the
    same size). A task that also reads such an input another way (a mean over the sequence, its last step, a
    flattening), per-step tasks and tasks with no such read-out get no window. The window assumes that the
    layers before the read-out run forward in time, as the models that read a sequence at a fixed step do (a
    bidirectional layer would let that step read later ones).

    Args:
        model: a Functional `kmtl.MultiTaskModel` (its `output` a dict keyed by task name); an input of a model with
            one unnamed input is named `"input"`, as `classical_scores` names it.

    Returns:
        dict `{task: {input: steps}}`, `steps` the number of leading steps read; tasks without a window left out.

    Example:

    >>> import keras, kmtl
    >>> from kmtl.layers import SequenceReadout
    >>> x, mask = keras.Input((None, 3), name="x"), keras.Input((None,), name="mask")
    >>> at_48 = SequenceReadout(47)([keras.layers.Dense(4)(x), mask])  # a recurrent network in practice
    >>> task = kmtl.Task("mortality", "binary")
    >>> model = kmtl.MultiTaskModel({"x": x, "mask": mask}, {"mortality": kmtl.heads.task_head(task, at_48)},
    ...                             tasks=[task])
    >>> input_windows(model)
    {'mortality': {'mask': 48, 'x': 48}}
    """
    import keras

    from kmtl.layers import SequenceReadout

    structure = model.input
    named = list(structure.items()) if isinstance(structure, dict) else [("input", structure)]
    windows = {}
    for task in model.tasks:
        if task.per_step or task.per_pixel:
            continue
        output = model.output[task.name]
        operations = keras.Function(inputs=[t for _, t in named], outputs=output).operations
        readouts = [op for op in operations if isinstance(op, SequenceReadout) and op.step is not None]
        try:
            cuts = [layer.output for layer in readouts]
            lengths = {layer.input[0].shape[1] for layer in readouts}
        except (AttributeError, ValueError):  # a read-out called at several places: no window
            continue
        aligned = [name for name, tensor in named
                   if len(tensor.shape) >= 2 and len(lengths) == 1 and tensor.shape[1] in lengths]
        if not readouts or not aligned:
            continue
        others = [tensor for name, tensor in named if name not in aligned]
        try:  # connected without the aligned inputs: the task reads them only through the read-outs
            keras.Function(inputs=others + cuts, outputs=output)
        except ValueError:
            continue
        steps = max(layer.step for layer in readouts) + 1
        windows[task.name] = {name: steps for name in sorted(aligned)}
    return windows


def checked_windows(windows, tasks: Sequence, inputs: Mapping[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """`windows` as a dict, after checking that each names a whole-sequence task and inputs of the data (with a
    second axis), with positive step counts; raises a ValueError naming the task and the field otherwise."""
    windows = dict(windows or {})
    kinds = {t.name: t for t in tasks}
    for name, window in windows.items():
        if name not in kinds:
            raise ValueError(f"Invalid value for `windows`: unknown task {name!r}. Expected task names among "
                             f"{sorted(kinds)}. Received: windows={windows!r}")
        if kinds[name].per_step or kinds[name].per_pixel:
            raise ValueError(f"Invalid value for `windows[{name!r}]`: {name!r} is a per-step or per-pixel task, whose "
                             f"rows already read each step's inputs only. Expected whole-sequence tasks. Received: "
                             f"windows={windows!r}")
        unknown = [k for k in window if k not in inputs or inputs[k].ndim < 2]
        if unknown:
            raise ValueError(f"Invalid value for `windows[{name!r}]`: {unknown} are not inputs of the data with a "
                             f"steps axis. Expected names among {sorted(k for k, v in inputs.items() if v.ndim >= 2)}."
                             f" Received: windows={windows!r}")
        bad = {k: v for k, v in window.items()
               if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1}
        if bad:
            raise ValueError(f"Invalid value for `windows[{name!r}]`: steps {bad}. Expected a positive int per "
                             f"input. Received: windows={windows!r}")
    return windows


def windowed(inputs: Mapping[str, np.ndarray], window: Mapping[str, int]) -> dict[str, np.ndarray]:
    """The inputs with those named in `window` cut to their first steps (axis 1)."""
    return {k: v[:, : window[k]] if k in window else v for k, v in inputs.items()}


def describe(window: Mapping[str, int]) -> str:
    """e.g. `"; x, mask up to step 47 (the task's read-out)"`, or empty."""
    if not window:
        return ""
    by_steps = {}
    for name, steps in window.items():
        by_steps.setdefault(steps, []).append(name)
    parts = [f"{', '.join(names)} up to step {steps - 1}" for steps, names in by_steps.items()]
    return f"; {'; '.join(parts)} (the task's read-out: the model reads no later step)"
