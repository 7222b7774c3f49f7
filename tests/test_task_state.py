"""The model's per-task bookkeeping: one vector tracker for every task's loss and weight, and losses of alike tasks
computed together (issue 16: cost and tracing time must not grow by a metric variable or a loss graph per task)."""

import keras
import numpy as np
import pytest

import kmtl
from kmtl.losses import label_entries, masked_loss
from kmtl.losses.masked import stacked_masked_losses
from kmtl.model.task_state import TaskState, TaskTrackers, TrackedValue, loss_groups, update_metric


def _tasks():
    return [
        kmtl.Task("a", "binary"),
        kmtl.Task("b", "binary"),
        kmtl.Task("c", "multiclass", num_classes=3),
        kmtl.Task("d", "multiclass", num_classes=3),
        kmtl.Task("e", "regression", target_offset=3.0, target_scale=2.0),
        kmtl.Task("f", "regression"),
        kmtl.Task("g", "regression", loss=keras.losses.Huber(delta=0.5)),
        kmtl.Task("h", "regression", loss=keras.losses.Huber(delta=2.0)),
        kmtl.Task("s", "binary", per_step=True),
    ]


def _batch(tasks, rows=16, seed=0):
    rng = np.random.default_rng(seed)
    y, p = {}, {}
    for t in tasks:
        if t.per_step:
            y[t.name] = rng.integers(-1, 2, (rows, 3)).astype("float32")
            p[t.name] = rng.uniform(0.05, 0.95, (rows, 3, 1)).astype("float32")
        elif t.kind == "binary":
            # Labels of one task int, of the other float: stacked together all the same.
            y[t.name] = rng.integers(-1, 2, (rows, 1)).astype("int32" if t.name == "b" else "float32")
            p[t.name] = rng.uniform(0.05, 0.95, (rows, 1)).astype("float32")
        elif t.kind == "multiclass":
            y[t.name] = rng.integers(-1, 3, (rows,)).astype("int32")
            q = rng.uniform(size=(rows, 3))
            p[t.name] = (q / q.sum(1, keepdims=True)).astype("float32")
        else:
            v = rng.normal(size=(rows, 1)).astype("float32")
            v[rng.uniform(size=(rows, 1)) < 0.3] = np.nan
            y[t.name], p[t.name] = v, rng.normal(size=(rows, 1)).astype("float32")
    return y, p


def test_alike_tasks_are_grouped_and_others_alone():
    tasks = _tasks()
    state = TaskState(tasks, {}, {})
    # Huber objects with different deltas (which Huber's config omits) never share a group; nor per-step tasks.
    assert loss_groups(tasks, state.loss_fns) == [[0, 1], [2, 3], [4, 5], [6], [7], [8]]


@pytest.mark.parametrize("weighted", [False, True])
def test_stacked_losses_equal_each_tasks_masked_loss(weighted):
    tasks = _tasks()
    state = TaskState(tasks, {}, {})
    y, p = _batch(tasks)
    weight = np.random.default_rng(1).uniform(size=(16,)).astype("float32") if weighted else None
    for group in state.loss_groups:
        if tasks[group[0]].per_step:
            continue  # never stacked
        alike = [tasks[i] for i in group]
        got, counts = stacked_masked_losses(
            alike, state.loss_fns[alike[0].name], [y[t.name] for t in alike], [p[t.name] for t in alike], weight
        )
        for j, task in enumerate(alike):
            expected = masked_loss(task, state.loss_fns[task.name], y[task.name], p[task.name], weight)
            np.testing.assert_allclose(float(got[j]), float(expected), rtol=1e-6, atol=1e-7)
            labels = np.asarray(y[task.name], "float32")
            assert float(counts[j]) == np.sum(~np.isnan(labels) & (labels != -1))


def test_trackers_log_each_task_as_separate_means_did():
    trackers = TaskTrackers(["a", "b"])
    assert len(trackers.variables) == 1  # whatever the number of tasks
    trackers.update_state(np.array([1.0, 2.0]), np.array([0.5, 1.5]), 4)
    trackers.update_state(np.array([3.0, 4.0]), np.array([1.0, 1.0]), 2)
    result = {k: float(v) for k, v in trackers.result().items()}
    assert list(result) == ["a_loss", "a_weight", "b_loss", "b_weight"]
    np.testing.assert_allclose(
        list(result.values()), [(4 + 6) / 6, (2 + 2) / 6, (8 + 8) / 6, (6 + 2) / 6], rtol=1e-6
    )
    trackers.views[1].reset_state()  # only the first value's reset resets them all
    assert float(trackers.result()["a_loss"]) != 0.0
    trackers.views[0].reset_state()
    assert all(float(v) == 0.0 for v in trackers.result().values())


def test_model_metric_variables_do_not_grow_per_task_for_trackers():
    tasks = [kmtl.Task(f"t{i}", "regression", metrics=[]) for i in range(6)]
    x = keras.Input((3,))
    model = kmtl.builders.hard_sharing(x, keras.layers.Dense(4)(x), tasks)
    model.compile(optimizer="sgd")
    assert model.metrics_names == ["loss"] + [f"t{i}_{k}" for i in range(6) for k in ("loss", "weight")]
    # Keras's loss tracker (2 variables) and the tasks' one vector (held by the first tracked value, so that
    # `metrics_variables`, which backups save and distribution strategies sync, has it once).
    assert sum(len(m.variables) for m in model.metrics) == 3
    assert len(model.metrics[1].source.variables) == 1
    rng = np.random.default_rng(0)
    data = rng.normal(size=(8, 3)).astype("float32")
    labels = {t.name: rng.normal(size=(8, 1)).astype("float32") for t in tasks}
    logs = model.train_on_batch(data, labels, return_dict=True)
    assert sorted(logs) == sorted(model.metrics_names)
    np.testing.assert_allclose(logs["loss"], sum(logs[f"t{i}_loss"] for i in range(6)), rtol=1e-5)
    assert all(logs[f"t{i}_weight"] == 1.0 for i in range(6))


def _metric_tasks():
    return [
        kmtl.Task("a", "binary"),
        kmtl.Task("b", "binary"),
        kmtl.Task("c", "multiclass", num_classes=3, metrics=["accuracy", "top_2_accuracy", "crossentropy"]),
        kmtl.Task("d", "multiclass", num_classes=3, metrics=["accuracy", "top_2_accuracy", "crossentropy"]),
        kmtl.Task("e", "regression", metrics=["mae", "rmse", "mse"]),
        kmtl.Task("f", "regression", metrics=["mae", "rmse", "mse"]),
        kmtl.Task(
            "g", "binary", metrics=["accuracy", keras.metrics.AUC(num_thresholds=50, summation_method="minoring")]
        ),
        kmtl.Task("h", "binary", metrics=["accuracy", keras.metrics.AUC(curve="PR")]),  # no grouped PR AUC
        kmtl.Task("s", "binary", per_step=True),
    ]


def test_grouped_metrics_equal_each_tasks_own():
    tasks = _metric_tasks()
    state = TaskState(tasks, {}, {})
    grouped = [[tasks[i].name for i in indices] for indices, _ in state.metric_groups]
    assert grouped == [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]
    assert state.metrics["h"] and state.metrics["s"] and not state.metrics["a"]
    rng = np.random.default_rng(2)
    # Per-task weights, one task without: the shared-weight case is the same columns.
    weight = {t.name: rng.uniform(size=(16,)).astype("float32") for t in tasks if t.name != "b"}
    own = {t.name: kmtl.metrics.resolve_metrics(t) for t in tasks}
    model_like = kmtl.MultiTaskModel.compute_metrics
    for batch_seed in (0, 1):  # two batches: the means accumulate
        y, p = _batch(tasks, seed=batch_seed)
        for t in tasks:
            w = weight.get(t.name) if isinstance(weight, dict) else weight
            entries = label_entries(t, y[t.name], p[t.name], w)
            for metric in own[t.name]:
                update_metric(t, metric, y[t.name], p[t.name], w, entries)
        holder = type("Holder", (), {"_tasks": tasks, "_task_state": state, "_require_compiled": lambda self: state,
                                     "metrics": state.all_metrics(),
                                     "get_metrics_result": kmtl.MultiTaskModel.get_metrics_result})()
        got = model_like(holder, None, y, p, weight)
    expected = {m.name: float(m.result()) for t in tasks for m in own[t.name]}
    assert list(got) == [f"{t}_{k}" for t in "abcdefghs" for k in ("loss", "weight")] + list(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(float(got[name]), value, rtol=1e-6, atol=1e-7, err_msg=name)
    assert all(isinstance(m, TrackedValue) for m in state.logged["a"])


def test_grouped_losses_with_per_task_weights_equal_each_tasks():
    tasks = _tasks()
    state = TaskState(tasks, {}, {})
    y, p = _batch(tasks)
    rng = np.random.default_rng(3)
    weights = {t.name: rng.uniform(size=(16,)).astype("float32") for t in tasks if t.name not in ("b", "s")}
    model = kmtl.MultiTaskModel
    methods = ("task_losses", "separate_task_losses", "_task_loss", "_replica_shares")
    holder = type("Holder", (), {"_tasks": tasks, "_require_compiled": lambda self: state,
                                 **{name: getattr(model, name) for name in methods}})()
    got = holder.task_losses(y, p, weights)
    separate = holder.separate_task_losses(y, p, weights)  # the per-task gradients' targets
    for i, task in enumerate(tasks):
        expected = masked_loss(task, state.loss_fns[task.name], y[task.name], p[task.name], weights.get(task.name))
        np.testing.assert_allclose(float(got[i]), float(expected), rtol=1e-6, atol=1e-7, err_msg=task.name)
        np.testing.assert_allclose(float(separate[i]), float(expected), rtol=1e-6, atol=1e-7, err_msg=task.name)


@pytest.mark.slow
def test_grouped_metrics_in_a_model_keep_names_and_variables_per_group():
    tasks = [kmtl.Task(f"t{i}", "binary") for i in range(5)]
    x = keras.Input((3,))
    model = kmtl.builders.hard_sharing(x, keras.layers.Dense(4)(x), tasks)
    model.compile(optimizer="sgd")
    names = ["loss"] + [f"t{i}_{k}" for i in range(5) for k in ("loss", "weight")]
    names += [f"t{i}_{k}" for i in range(5) for k in ("accuracy", "auc")]
    assert model.metrics_names == names
    # Keras's loss tracker (2), the trackers' vector (1), one grouped accuracy (2), one grouped AUC (4).
    assert sum(len(m.variables) for m in model.metrics) == 9
    rng = np.random.default_rng(0)
    data = rng.normal(size=(32, 3)).astype("float32")
    labels = {t.name: rng.integers(-1, 2, (32, 1)).astype("float32") for t in tasks}
    history = model.fit(data, labels, epochs=1, batch_size=16, verbose=0)
    assert sorted(history.history) == sorted(names)
    assert sorted(model.evaluate(data, labels, verbose=0, return_dict=True)) == sorted(names)
    assert len(model.train_on_batch(data, labels)) == len(names)  # a list in `metrics_names` order
