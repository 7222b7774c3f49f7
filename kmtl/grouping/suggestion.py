"""`suggest`: which tasks should share a branch, from their affinity in a short joint training."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from kmtl._checks import check_nonnegative_int, check_number, check_positive_int
from kmtl._files import write_file
from kmtl.grouping.affinity import METHODS, measure_affinity
from kmtl.grouping.branched import branched, group_tasks
from kmtl.grouping.partition import EXACT_MAX_TASKS, best_partitions, nest_groups
from kmtl.model import MultiTaskModel
from kmtl.tasks.fit_checks import check_fit_data


@dataclasses.dataclass(frozen=True, eq=False)
class TaskGrouping:
    """What `kmtl.grouping.suggest` found: the affinity between tasks and the groups that keep the most of it.

    Attributes:
        tasks: tuple of `kmtl.Task`, in the model's order.
        affinity: float array `(T, T)`, rows and columns in task order: entry `[i, j]` is task `i`'s affinity onto
            task `j` (lookahead: the relative drop of `j`'s loss after a step on `i`'s loss; gradient: the cosine
            of their gradients). The diagonal is a task's affinity onto itself; grouping ignores it.
        groups: list of lists of task names, ordered by their first task in task order; with `levels > 1` a group
            may be a list of groups (nested lists), as `branched` takes them.
        score: float. The (top-level) groups' total within-group affinity (sum over ordered pairs of distinct
            tasks).
        scores: dict `{k: score}`. The best total found with exactly `k` groups, for each `k` searched.
        method: str. `"lookahead"` or `"gradient"`.
    """

    tasks: tuple
    affinity: np.ndarray
    groups: list
    score: float
    scores: dict
    method: str

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def table(self, digits: int = 4) -> str:
        """The affinity matrix as text, rows (stepping task) and columns labelled with task names (numbered, the
        rows "number name", when a name is wider than the values)."""
        names = self.task_names
        cells = [[f"{value:.{digits}f}" for value in row] for row in self.affinity]
        width = max(len(c) for row in cells for c in row)
        if max(len(n) for n in names) > width:  # long names: number the columns, name the rows "number name"
            rows = [f"{i} {n}" for i, n in enumerate(names, start=1)]
            columns = [str(i) for i in range(1, len(names) + 1)]
        else:
            rows = columns = names
        label = max(len(r) for r in rows)
        lines = [" " * label + "  " + "  ".join(c.rjust(width) for c in columns)]
        lines += [r.rjust(label) + "  " + "  ".join(c.rjust(width) for c in row) for r, row in zip(rows, cells)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"Task affinity ({self.method}; row: stepping task, column: affected task)\n{self.table()}\n" + (
            f"groups: {self.groups} (within-group affinity {self.score:.4g})"
        )

    def to_frame(self):
        """The affinity matrix as a pandas DataFrame indexed by task names (needs the `pandas` extra)."""
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError(
                'to_frame needs pandas, the optional extra `pandas`: pip install "kmtl[pandas]"'
            ) from error
        return pd.DataFrame(self.affinity, index=self.task_names, columns=self.task_names)

    def builder_call(
        self, inputs: str = "inputs", features: str = "features", tasks: str = "tasks", branch_units=(32,)
    ) -> str:
        """The Python call that builds the suggested branched model, for the given variable names."""
        units = tuple(int(u) for u in branch_units)
        return f"kmtl.grouping.branched({inputs}, {features}, {tasks}, groups={self.groups!r}, branch_units={units!r})"

    def build(self, inputs, features, *, tasks=None, **kwargs) -> MultiTaskModel:
        """Builds the suggested branched model: `kmtl.grouping.branched(inputs, features, tasks, self.groups, ...)`.

        Args:
            inputs: Keras input tensor(s).
            features: symbolic tensor `(batch, d)`, the trunk shared by all tasks.
            tasks: list of `kmtl.Task`; defaults to the tasks the affinity was measured on.
            **kwargs: more arguments of `branched` (`branch_units`, `head_units`, `activation`, ...).
        """
        return branched(inputs, features, list(self.tasks if tasks is None else tasks), self.groups, **kwargs)

    def plot(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Writes a heatmap of the affinity matrix as a PNG, tasks ordered by group, with lines between groups
        (dashed between the subgroups of nested groups).

        The colour scale is centred at 0 and set by the largest off-diagonal entry (the diagonal, a task's affinity
        onto itself, is usually far larger); every cell is labelled with its value.

        Args:
            path: str or Path of the PNG file.
            overwrite: bool. Replace an existing file; otherwise raise FileExistsError.

        Returns:
            The path written.

        Raises:
            ImportError: when matplotlib (the optional extra `plots`) is not installed.
            FileExistsError: when `path` exists and `overwrite` is False.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError('plot needs matplotlib, the optional extra `plots`: pip install "kmtl[plots]"') from error
        order = [self.task_names.index(n) for g in self.groups for n in group_tasks(g)]
        names = [self.task_names[i] for i in order]
        matrix = self.affinity[np.ix_(order, order)]
        off = matrix[~np.eye(len(order), dtype=bool)]
        limit = float(np.nanmax(np.abs(off))) if off.size and np.isfinite(off).any() else 1.0
        size = max(4.0, 0.7 * len(names) + 2.0)
        figure = Figure(figsize=(size + 1.0, size), layout="constrained")
        ax = figure.subplots()
        image = ax.imshow(matrix, cmap="RdBu", vmin=-(limit or 1.0), vmax=limit or 1.0)
        figure.colorbar(image, ax=ax, shrink=0.8)
        ticks = range(len(names))
        ax.set_xticks(ticks, names, rotation=45, ha="right")
        ax.set_yticks(ticks, names)
        ax.set_xlabel("affected task")
        ax.set_ylabel("stepping task")
        ax.set_title(f"task affinity ({self.method})")
        for (i, j), value in np.ndenumerate(matrix):
            strong = limit and abs(value) > 0.6 * limit
            ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=8, color="white" if strong else "black")

        def draw_lines(groups, start, depth):  # solid between groups, dashed between the subgroups of a group
            edge = start
            for number, group in enumerate(groups):
                subgroups = [item for item in group if not isinstance(item, str)]
                if subgroups and len(subgroups) == len(group):
                    draw_lines(subgroups, edge, depth + 1)
                edge += len(group_tasks(group))
                if number < len(groups) - 1:
                    style = {"linestyle": "-" if depth == 0 else "--", "linewidth": 1.5 if depth == 0 else 0.8}
                    ax.axhline(edge, color="black", **style)
                    ax.axvline(edge, color="black", **style)

        draw_lines(self.groups, -0.5, 0)

        def save(temporary):
            with open(temporary, "wb") as handle:
                figure.savefig(handle, format="png", dpi=100)

        return write_file(path, save, overwrite=overwrite)


def suggest(
    model_or_build_fn: MultiTaskModel | Callable[[], MultiTaskModel],
    data: Any,
    *,
    method: str = "lookahead",
    k: int | None = None,
    steps: int = 100,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    optimizer: Any = None,
    seed: int | None = 0,
    exact_max_tasks: int = EXACT_MAX_TASKS,
    weighting: str = "equal",
    levels: int = 1,
) -> TaskGrouping:
    """Measures inter-task affinity in a short joint training and groups the tasks that help each other.

    The model trains for `steps` batches on the sum of its task losses (`weighting`); before each step the affinity of
    every task onto every other is measured on that batch (see `method`) and the mean over steps is the affinity
    matrix. The groups are the partition of the tasks with the highest total affinity within groups: with exactly
    `k` groups, or (`k=None`) the best over every number of groups, the fewer groups on a tie. Tasks whose steps
    help each other (positive affinity) end up together, tasks that hurt each other apart. Exact search up to
    `exact_max_tasks` tasks, greedy merging with local moves above (see `kmtl.grouping.partition`).

    Every variable of a model passed in is restored afterwards: it leaves with the weights it came with. A build
    function is called once for a fresh model (after seeding, so the same seed measures the same model).

    Args:
        model_or_build_fn: `kmtl.MultiTaskModel` with shared variables, or a function of no arguments returning
            one. Losses: the compiled model's (with its `loss` overrides), else the tasks' own (a build function's
            uncompiled model is compiled with default settings, which gives the same losses).
        data: `(inputs, {task_name: labels})` arrays, or a `tf.data.Dataset` of such batches (repeated as needed).
        method: `"lookahead"` (Fifty et al. 2021: `1 - L_j(after a step on L_i) / L_j(before)`) or `"gradient"`
            (cosine similarity of the tasks' gradients of the shared variables; cheaper, symmetric).
        k: int in `1..T`, or None to choose the number of groups.
        steps: int. Training steps (each measured).
        batch_size: int. Batch size for array data.
        learning_rate: float. The lookahead step size, and the learning rate of the default optimizer.
        optimizer: Keras optimizer (name, or instance whose config is copied) for the joint training; defaults to
            `SGD(learning_rate)`. The instance passed is not used itself, so its state is left alone.
        seed: int or None. `keras.utils.set_random_seed(seed)` before building and the shuffling seed.
        exact_max_tasks: int. Largest number of tasks searched exactly.
        weighting: `"equal"` (the plain sum of the task losses) or `"static"`: each task's loss times its
            `Task.loss_weight`, as `compile(weighting="static")` trains, and task `i`'s lookahead step is
            `learning_rate * loss_weight_i` times its gradient (for tasks whose losses have different units).
        levels: int >= 1. Depths at which the branches split: with 2, the groups whose tasks help each other more
            than tasks of different groups do on average are gathered into groups of groups
            (`kmtl.grouping.nest_groups`), which share a branch before each group's own (Lu et al. 2017); 3 gathers
            those again, and so on. The groups then nest, as `branched` takes them.

    Returns:
        `TaskGrouping` with `groups`, `affinity`, `plot(path)`, `builder_call()` and `build(inputs, features)`.

    Raises:
        ValueError: for an unknown `method`, a `k` outside `1..T`, a model with fewer than two tasks or no shared
            variables, invalid numbers, or data that does not fit the tasks — all before training starts.

    Example:

    >>> grouping = kmtl.grouping.suggest(build_model, (x, y), steps=200)  # doctest: +SKIP
    >>> grouping.groups  # doctest: +SKIP
    [['a1', 'a2'], ['b1', 'b2']]
    >>> model = grouping.build(inputs, trunk, branch_units=(32,))  # doctest: +SKIP

    Reference:
        Fifty, Amid, Zhao, Yu, Anil, Finn (2021). Efficiently Identifying Task Groupings for Multi-Task Learning.
        NeurIPS. Lu, Kumar, Zhai, Cheng, Javidi, Feris (2017). Fully-Adaptive Feature Sharing in Multi-Task
        Networks with Applications in Person Attribute Classification. CVPR.
    """
    if method not in METHODS:
        raise ValueError(f"Invalid value for `method`. Expected one of {list(METHODS)}. Received: method={method!r}")
    if weighting not in ("equal", "static"):
        raise ValueError(
            f"Invalid value for `weighting`. Expected 'equal' or 'static'. Received: weighting={weighting!r}"
        )
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    learning_rate = check_number("learning_rate", learning_rate)
    exact_max_tasks = check_positive_int("exact_max_tasks", exact_max_tasks)
    levels = check_positive_int("levels", levels)
    if seed is not None:
        seed = check_nonnegative_int("seed", seed)
        keras.utils.set_random_seed(seed)
    model = _model(model_or_build_fn)
    num_tasks = len(model.tasks)
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_tasks):
        raise ValueError(
            f"Invalid value for `k`. Expected None or a number of groups from 1 to the model's {num_tasks} tasks "
            f"{model.task_names}. Received: k={k!r}"
        )
    optimizer = _fresh_optimizer(optimizer, learning_rate)
    batches = _batches(model, data, batch_size, seed)
    weights = [t.loss_weight for t in model.tasks] if weighting == "static" else None
    affinity = measure_affinity(
        model, batches, method=method, steps=steps, learning_rate=learning_rate, optimizer=optimizer, weights=weights
    )
    if not np.isfinite(affinity).all():
        bad = sorted({model.task_names[j] for i, j in zip(*np.nonzero(~np.isfinite(affinity)))})
        raise ValueError(
            f"The affinity onto task(s) {bad} could not be measured: no batch had labels for them (or their loss "
            "was zero in every step). Check their labels, or measure for more steps."
        )
    found = best_partitions(affinity, k or num_tasks, exact_max_tasks=exact_max_tasks)
    chosen = k or max(found, key=lambda c: (found[c][1], -c))
    groups, score = found[chosen]

    def named(group):
        return [model.task_names[i] if isinstance(i, (int, np.integer)) else named(i) for i in group]

    groups = named(nest_groups(affinity, groups, levels, exact_max_tasks=exact_max_tasks))
    return TaskGrouping(
        tasks=tuple(model.tasks),
        affinity=affinity,
        groups=groups,
        score=score,
        scores={c: s for c, (_, s) in sorted(found.items())},
        method=method,
    )


def _model(model_or_build_fn) -> MultiTaskModel:
    model = model_or_build_fn
    if not isinstance(model, keras.Model):
        if not callable(model):
            raise ValueError(
                "Invalid value for `model_or_build_fn`. Expected a kmtl.MultiTaskModel or a function returning one. "
                f"Received: {type(model).__name__}"
            )
        model = model()
    if not isinstance(model, MultiTaskModel):
        raise ValueError(
            "Invalid value for `model_or_build_fn`. Expected a kmtl.MultiTaskModel (as the builders return) or a "
            f"function returning one. Received: {type(model).__name__}"
        )
    if len(model.tasks) < 2:
        raise ValueError(f"Task grouping needs at least two tasks. Received a model with tasks {model.task_names}.")
    if not model.shared_variables:
        raise ValueError(
            "Task grouping measures how tasks affect each other through shared variables, but the model has none: "
            "no trainable layer feeds more than one task. Measure on a model with a shared trunk (e.g. hard_sharing)."
        )
    if model is not model_or_build_fn and not model.compiled:
        # A fresh model of ours: compiled, its task losses are computed a few alike tasks per op (faster to trace).
        model.compile(optimizer="sgd", weighting="equal")
    return model


def _fresh_optimizer(optimizer, learning_rate):
    if optimizer is None:
        return keras.optimizers.SGD(learning_rate=learning_rate)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return type(optimizer).from_config(optimizer.get_config())
    try:
        return keras.optimizers.get(optimizer)
    except ValueError:
        raise ValueError(
            "Invalid value for `optimizer`. Expected None, a Keras optimizer or its name. "
            f"Received: optimizer={optimizer!r}"
        ) from None


def _batches(model, data, batch_size, seed):
    """An endless iterator of `(inputs, labels)` batches of `data`, after checking it against the tasks."""
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, tuple) and len(spec) == 3:
            raise ValueError(
                "Task grouping takes `(inputs, {task_name: labels})` batches; sample weights are not used. "
                "Map the dataset to its first two components."
            )
        dataset, _ = check_fit_data(model, data)
        return iter(dataset.repeat())
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            "Invalid value for `data`. Expected `(inputs, {task_name: labels})` arrays or a tf.data.Dataset of such "
            f"batches. Received: {type(data).__name__}"
            + (f" of {len(data)} items" if isinstance(data, (tuple, list)) else "")
        )
    x, y = data
    check_fit_data(model, x, y)
    num_examples = len(keras.tree.flatten(x)[0])
    dataset = tf.data.Dataset.from_tensor_slices((x, dict(y)))
    dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    return iter(dataset.batch(min(batch_size, num_examples), drop_remainder=True).repeat())
