"""Hierarchical multi-task models: tasks supervised at different depths of one shared stack."""

from __future__ import annotations

from typing import Mapping, Sequence

import keras

from kmtl.builders._common import check_activation, positive_ints, vector_features
from kmtl.heads import task_head
from kmtl.layers.label_embedding import LabelEmbedding
from kmtl.layers.stop_gradient import StopGradient
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def hierarchy(
    inputs,
    tasks: Sequence[Task],
    levels: Mapping[str, int],
    *,
    units: int | Sequence[int] = 64,
    activation: str = "relu",
    shortcuts: bool = False,
    label_embeddings: Mapping[str, int] | None = None,
    estimate_links: Mapping[str, Sequence[str]] | None = None,
    input_features=None,
    head_units: Sequence[int] = (),
    name: str = "hierarchy",
) -> MultiTaskModel:
    """Builds a hierarchy: a shared stack of `L` Dense layers, each task supervised at its own depth.

    `levels` maps every task to a depth `1..L` (`L = max(levels.values())`); the head of a task at depth `l` reads
    layer `level_<l>`. Low-level tasks thus shape the lower layers and higher tasks build on them.

    Options:

    - `shortcuts=True`: every layer above the first also reads the raw inputs (a shortcut connection).
    - `label_embeddings={"pos": 8}`: task `pos`'s predicted distribution is embedded by a
      `kmtl.layers.LabelEmbedding` `<task>_label_embedding` (8 units) and fed to every layer above its level.
      Classification tasks only. Gradients flow through it, so higher tasks' losses also train the lower task.
    - `estimate_links={"b": ["a"]}`: task `b`'s head also reads task `a`'s prediction through a
      `kmtl.layers.StopGradient` `<b>_reads_<a>`, so `b`'s loss never updates `a`'s parameters.

    Sequence features: when `input_features` is `(batch, steps, d)` (e.g. token embeddings with a padding mask),
    each level is a bidirectional LSTM `level_<l>` (`units` per direction) returning a sequence, so per-token tasks
    (`Task(per_step=True)`, with a CRF through `loss=kmtl.losses.CRFLoss()`) are read out at their level, shortcuts
    and label embeddings are concatenated per token, and the padding mask flows to every level and head
    (Søgaard & Goldberg 2016; Hashimoto et al. 2017). For a flat model, put every task on the top level.

    Which variables are shared follows the graph: a layer below several tasks' levels is shared; the top layer
    belongs to its task when only one task reads it; heads belong to their task, also a head that another task reads
    through an estimate link (no gradient crosses the stop-gradient, and the partition follows gradients).

    Args:
        inputs: Keras input tensor(s) of the model: one `(batch, d)` tensor, or a list or dict of them.
        tasks: list of `kmtl.Task`.
        levels: dict `{task_name: depth}` with a depth in `1..L` for every task.
        units: int or sequence of `L` ints. Width of each level's Dense layer.
        activation: str. Activation of the level layers.
        shortcuts: bool. Whether levels above the first also read the inputs.
        label_embeddings: dict `{task_name: embedding size}` of lower tasks whose predictions are embedded and fed
            to the levels above them.
        estimate_links: dict `{reader: [task names]}`: the reader's head also reads those tasks' predictions,
            through a stop-gradient.
        input_features: symbolic tensor `(batch, d)`, or `(batch, steps, d)` for recurrent levels, computed from
            `inputs` that the first layers read (the layers computing it are shared). Defaults to `inputs`,
            concatenated when there are several.
        head_units: sequence of int. Hidden widths of every task head.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name.

    Raises:
        ValueError: for invalid tasks, levels, widths, embeddings, links (unknown tasks, a task reading itself or
            a cycle) or inputs.

    Example:

    >>> import keras, kmtl
    >>> x = keras.Input((16,), name="features")
    >>> tasks = [kmtl.Task("pos", "multiclass", num_classes=5), kmtl.Task("chunk", "multiclass", num_classes=3)]
    >>> model = hierarchy(x, tasks, {"pos": 1, "chunk": 2}, units=8, label_embeddings={"pos": 4})
    >>> model.get_layer("level_2").input.shape  # level 1's output and pos's label embedding
    (None, 12)

    Reference:
        Søgaard & Goldberg (2016). Deep multi-task learning with low level tasks supervised at lower layers. ACL.
        Hashimoto, Xiong, Tsuruoka & Socher (2017). A Joint Many-Task Model: Growing a Neural Network for Multiple
        NLP Tasks. EMNLP (shortcut connections and label embeddings).
    """
    tasks = validate_task_list(tasks)
    by_name = {task.name: task for task in tasks}
    levels = _check_levels(levels, by_name)
    depth = max(levels.values())
    units = positive_ints("units", [units] * depth if isinstance(units, int) else units)
    if len(units) != depth:
        raise ValueError(
            f"Invalid value for `units`. Expected an int or {depth} ints (one per level). Received: units={units}"
        )
    head_units = positive_ints("head_units", head_units, allow_empty=True)
    check_activation(activation)
    embeddings = _check_label_embeddings(label_embeddings or {}, by_name, levels, depth)
    links = _check_links(estimate_links or {}, by_name)
    order = _build_order(levels, embeddings, links, depth)
    sequence = input_features is not None and len(getattr(input_features, "shape", ())) == 3
    features = input_features if sequence else vector_features(inputs, input_features, "hierarchy")

    # === Levels and heads, in dependency order ===
    built = {"level": {}, "task": {}, "embedding": {}}
    for kind, key in order:
        if kind == "level":
            built["level"][key] = _level(key, features, built, levels, embeddings, units[key - 1], activation,
                                         shortcuts, sequence)
        else:
            built["task"][key] = _head(by_name[key], built, levels, links.get(key, ()), head_units)
    outputs = {task.name: built["task"][task.name] for task in tasks}
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks)


def _level(level, features, built, levels, embeddings, width, activation, shortcuts, sequence=False):
    """Level `level`: a Dense layer (a BiLSTM over sequences) on the level below, the shortcut and the lower tasks'
    label embeddings."""
    parts = [features if level == 1 else built["level"][level - 1]]
    if shortcuts and level > 1:
        parts.append(features)
    for task_name, size in embeddings.items():
        if levels[task_name] < level:
            if task_name not in built["embedding"]:  # made once, read by every level above the task
                layer = LabelEmbedding(size, name=f"{task_name}_label_embedding")
                built["embedding"][task_name] = layer(built["task"][task_name])
            parts.append(built["embedding"][task_name])
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=f"level_{level}_inputs")(parts)
    if sequence:
        recurrent = keras.layers.LSTM(width, return_sequences=True, name=f"level_{level}_lstm")
        return keras.layers.Bidirectional(recurrent, name=f"level_{level}")(x)
    return keras.layers.Dense(width, activation=activation, name=f"level_{level}")(x)


def _head(task, built, levels, sources, head_units):
    """The task's head on its level, plus the predictions it reads through a stop-gradient."""
    parts = [built["level"][levels[task.name]]]
    parts += [StopGradient(name=f"{task.name}_reads_{source}")(built["task"][source]) for source in sources]
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=f"{task.name}_head_inputs")(parts)
    return task_head(task, x, head_units)


def _check_levels(levels, by_name):
    if not isinstance(levels, Mapping):
        raise ValueError(f"Invalid value for `levels`. Expected a dict {{task_name: depth}}. Received: {levels!r}")
    unknown = [k for k in levels if k not in by_name]
    missing = [n for n in by_name if n not in levels]
    if unknown or missing:
        raise ValueError(
            f"`levels` must give a depth for every task and only for tasks {list(by_name)}. "
            f"Unknown: {unknown}; missing: {missing}."
        )
    bad = {k: v for k, v in levels.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"Invalid value for `levels`. Expected depths >= 1. Received: {bad}")
    return dict(levels)


def _check_label_embeddings(embeddings, by_name, levels, depth):
    if not isinstance(embeddings, Mapping):
        raise ValueError(f"Invalid value for `label_embeddings`. Expected a dict {{task_name: size}}. Received: "
                         f"{embeddings!r}")
    for task_name, size in embeddings.items():
        if task_name not in by_name:
            raise ValueError(f"`label_embeddings` names unknown task {task_name!r}. Tasks: {list(by_name)}.")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"Invalid value for `label_embeddings[{task_name!r}]`. Expected a positive int. "
                             f"Received: {size!r}")
        if by_name[task_name].kind == "regression":
            raise ValueError(f"`label_embeddings`: task {task_name!r} is a regression task; label embeddings embed "
                             "a predicted class distribution (binary, multiclass or multilabel tasks).")
        if levels[task_name] >= depth:
            raise ValueError(f"`label_embeddings`: task {task_name!r} is at the top level ({depth}); no level above "
                             "it would read its label embedding.")
    return dict(embeddings)


def _check_links(links, by_name):
    if not isinstance(links, Mapping):
        raise ValueError(f"Invalid value for `estimate_links`. Expected a dict {{reader: [task names]}}. "
                         f"Received: {links!r}")
    checked = {}
    for reader, sources in links.items():
        sources = [sources] if isinstance(sources, str) else list(sources)
        unknown = [n for n in [reader, *sources] if n not in by_name]
        if unknown:
            raise ValueError(f"`estimate_links` names unknown task(s) {unknown}. Tasks: {list(by_name)}.")
        if reader in sources:
            raise ValueError(f"`estimate_links`: task {reader!r} cannot read its own prediction.")
        checked[reader] = list(dict.fromkeys(sources))
    return checked


def _build_order(levels, embeddings, links, depth):
    """Levels and task heads in an order where everything is built after what it reads; raises on a cycle."""
    def needs(node):
        kind, key = node
        if kind == "level":
            below = [("level", key - 1)] if key > 1 else []
            return below + [("task", t) for t in embeddings if levels[t] < key]
        return [("level", levels[key])] + [("task", s) for s in links.get(key, ())]

    order, state = [], {}  # state: 1 = being visited, 2 = done

    def visit(node, path):
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            loop = path[path.index(node):] + [node]
            steps = ", ".join(f"{_describe(a)} reads {_describe(b)}" for a, b in zip(loop, loop[1:]))
            raise ValueError(f"`estimate_links` and `label_embeddings` form a cycle: {steps}.")
        state[node] = 1
        for dependency in needs(node):
            visit(dependency, path + [node])
        state[node] = 2
        order.append(node)

    for level in range(1, depth + 1):
        visit(("level", level), [])
    for task_name in levels:
        visit(("task", task_name), [])
    return order


def _describe(node):
    kind, key = node
    return f"level {key}" if kind == "level" else key
