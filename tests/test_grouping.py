"""`kmtl.grouping`: affinity measurement, the partition search, the branched builder and `suggest` end to end."""

import importlib.util
import itertools
import sys

import keras
import numpy as np
import pytest

import kmtl
from kmtl import Task
from kmtl.grouping import TaskGrouping, best_partitions, partition_score
from kmtl.grouping.affinity import measure_affinity

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def grouped_regression(sizes=(2, 2, 2), n=256, d=8, noise=0.1, seed=0):
    """Regression tasks in groups: group g's tasks are `s_t * (x . u_g) + noise` with orthonormal directions `u_g`
    and scales `s_t` in [0.5, 1.5], so tasks of a group want the same feature and tasks of different groups
    unrelated ones. Returns `(x, labels, names)`, names `a1, a2, b1, ...` (letter: group)."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(d, d)))[0][:, : len(sizes)].T
    x = rng.normal(size=(n, d)).astype("float32")
    labels, names = {}, []
    for g, size in enumerate(sizes):
        latent = x @ directions[g]
        for t in range(1, size + 1):
            name = f"{'abcdefgh'[g]}{t}"
            labels[name] = (rng.uniform(0.5, 1.5) * latent + noise * rng.normal(size=n)).astype("float32")[:, None]
            names.append(name)
    return x, labels, names


def trunk_model(names, d=8, width=8, dropout=0.0):
    x = keras.Input((d,), name="x")
    h = keras.layers.Dense(width, activation="tanh", name="trunk")(x)
    if dropout:
        h = keras.layers.Dropout(dropout, name="trunk_dropout")(h)
    return kmtl.builders.hard_sharing(x, h, [Task(n, "regression") for n in names])


def brute_force(affinity, k):
    """The best score over every assignment of T tasks to k non-empty labelled groups."""
    size = affinity.shape[0]
    best = -np.inf
    for labels in itertools.product(range(k), repeat=size):
        if len(set(labels)) == k:
            groups = [[i for i in range(size) if labels[i] == g] for g in range(k)]
            best = max(best, partition_score(affinity, groups))
    return best


# === The partition search ===


def test_partition_score_sums_ordered_pairs_within_groups():
    affinity = np.arange(16.0).reshape(4, 4)
    # {0, 2}: [0,2] + [2,0] = 2 + 8; {1, 3}: [1,3] + [3,1] = 7 + 13; the diagonal never counts.
    assert partition_score(affinity, [[0, 2], [1, 3]]) == 30.0
    assert partition_score(affinity, [[0], [1], [2], [3]]) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_search_matches_brute_force_for_every_k(seed):
    affinity = np.random.default_rng(seed).normal(size=(5, 5))
    found = best_partitions(affinity, 5)
    for k, (groups, score) in found.items():
        assert len(groups) == k and sorted(i for g in groups for i in g) == list(range(5))
        assert score == pytest.approx(partition_score(affinity, groups), abs=1e-12)
        assert score == pytest.approx(brute_force(affinity, k), abs=1e-12), k


def test_greedy_search_finds_planted_blocks_and_never_beats_exact():
    rng = np.random.default_rng(0)
    blocks = np.repeat(np.arange(4), 3)  # 12 tasks in 4 blocks of 3, above the exact limit of 10
    affinity = np.where(blocks[:, None] == blocks[None, :], 1.0, -0.5) + 0.2 * rng.normal(size=(12, 12))
    order = rng.permutation(12)
    affinity, blocks = affinity[np.ix_(order, order)], blocks[order]
    found = best_partitions(affinity, 12)  # greedy: 12 tasks
    best_k = max(found, key=lambda k: found[k][1])
    assert best_k == 4
    assert sorted(sorted(g) for g in found[4][0]) == sorted(sorted(np.flatnonzero(blocks == b)) for b in range(4))
    small = affinity[:8, :8]
    exact = best_partitions(small, 8)
    greedy = best_partitions(small, 8, exact_max_tasks=1)
    for k in exact:
        assert greedy[k][1] <= exact[k][1] + 1e-12
        assert greedy[k][1] == pytest.approx(partition_score(small, greedy[k][0]))


# === The branched builder ===


def test_branched_shares_each_branch_within_its_group():
    x = keras.Input((4,), name="x")
    trunk = keras.layers.Dense(5, activation="relu", name="trunk")(x)
    tasks = [Task("a", "regression"), Task("b", "binary"), Task("c", "regression")]
    model = kmtl.grouping.branched(x, trunk, tasks, [["a", "c"], ["b"]], branch_units=(3, 2))
    assert sorted(model.output) == ["a", "b", "c"]
    shared = {v.path for v in model.shared_variables}
    assert shared == {
        "trunk/kernel", "trunk/bias",
        "branch_1/branch_1_dense_1/kernel", "branch_1/branch_1_dense_1/bias",
        "branch_1/branch_1_dense_2/kernel", "branch_1/branch_1_dense_2/bias",
    }
    assert {v.path.rsplit("/", 1)[0] for v in model.task_variables["b"]} == {
        "branch_2/branch_2_dense_1", "branch_2/branch_2_dense_2", "b"
    }
    outputs = model(np.ones((2, 4), "float32"))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"a": (2, 1), "b": (2, 1), "c": (2, 1)}


@pytest.mark.parametrize(
    "groups, match",
    [
        ([["a", "b"]], r"task\(s\) \['c'\] in no group"),
        ([["a", "b"], ["b", "c"]], r"task\(s\) \['b'\] in several groups"),
        ([["a", "b", "z"], ["c"]], r"unknown task\(s\) \['z'\]"),
        ([["a", "b", "c"], []], "an empty group"),
        ("abc", "Expected a list of lists of task names"),
    ],
)
def test_branched_rejects_groups_that_are_not_a_partition(groups, match):
    x = keras.Input((4,), name="x")
    tasks = [Task(n, "regression") for n in "abc"]
    with pytest.raises(ValueError, match=match):
        kmtl.grouping.branched(x, x, tasks, groups)


# === TaskGrouping: table, builder call, plot ===


def _grouping():
    tasks = (Task("a1", "regression"), Task("b1", "regression"), Task("a2", "regression"))
    affinity = np.array([[0.05, -0.01, 0.02], [-0.02, 0.04, -0.01], [0.03, 0.0, 0.06]])
    return TaskGrouping(tasks, affinity, [["a1", "a2"], ["b1"]], 0.05, {1: -0.01, 2: 0.05, 3: 0.0}, "lookahead")


def test_builder_call_builds_the_same_model_as_build():
    grouping = _grouping()
    inputs = keras.Input((4,), name="x")
    features = keras.layers.Dense(5, name="trunk")(inputs)
    tasks = list(grouping.tasks)
    built = eval(grouping.builder_call(), {"kmtl": kmtl, "inputs": inputs, "features": features, "tasks": tasks})
    again = grouping.build(inputs, features, branch_units=(32,))
    assert [layer.name for layer in built.layers] == [layer.name for layer in again.layers]
    assert {v.path for v in built.shared_variables} == {
        "trunk/kernel", "trunk/bias", "branch_1/branch_1_dense_1/kernel", "branch_1/branch_1_dense_1/bias"
    }
    assert "a1 " in grouping.table() and "-0.0200" in str(grouping)


def test_table_numbers_the_columns_when_names_are_wider_than_the_values():
    tasks = (Task("unemployment_change", "regression"), Task("gdp", "regression"))
    grouping = TaskGrouping(tasks, np.array([[0.5, -0.25], [0.125, 1.0]]), [["unemployment_change"], ["gdp"]], 0.0,
                            {1: -0.125, 2: 0.0}, "gradient")
    assert grouping.table(digits=3).splitlines() == [
        "                            1       2",
        "1 unemployment_change   0.500  -0.250",
        "                2 gdp   0.125   1.000",
    ]


def test_public_names_and_the_affinity_as_a_frame():
    assert sorted(kmtl.grouping.__all__) == [
        "TaskGrouping", "best_partitions", "branched", "nest_groups", "partition_score", "shared_features", "suggest"
    ]
    pytest.importorskip("pandas")
    frame = _grouping().to_frame()
    assert list(frame.index) == list(frame.columns) == ["a1", "b1", "a2"]
    assert frame.loc["b1", "a1"] == -0.02  # row: the stepping task


def test_plot_writes_a_png_and_never_overwrites(tmp_path):
    pytest.importorskip("matplotlib")
    path = _grouping().plot(tmp_path / "affinity.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    with pytest.raises(FileExistsError, match="affinity.png"):
        _grouping().plot(path)
    assert path.read_bytes() == data


def test_plot_without_matplotlib_says_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"kmtl\[plots\]"):
        _grouping().plot(tmp_path / "affinity.png")
    assert not list(tmp_path.iterdir())


# === suggest: errors before training ===


@pytest.fixture(scope="module")
def small():
    x, labels, names = grouped_regression((2, 1), n=16)
    return trunk_model(names), x, labels


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "hessian"}, r"Expected one of \['lookahead', 'gradient'\]. Received: method='hessian'"),
        ({"k": 4}, r"from 1 to the model's 3 tasks \['a1', 'a2', 'b1'\]. Received: k=4"),
        ({"k": 0}, "Received: k=0"),
        ({"steps": 0}, "Received: steps=0"),
        ({"learning_rate": -1.0}, "Received: learning_rate=-1.0"),
        ({"optimizer": "no_such_optimizer"}, "Received: optimizer='no_such_optimizer'"),
        ({"seed": 1.5}, "Received: seed=1.5"),
    ],
)
def test_suggest_rejects_bad_arguments(small, kwargs, match):
    model, x, labels = small
    with pytest.raises(ValueError, match=match):
        kmtl.grouping.suggest(model, (x, labels), **kwargs)


def test_suggest_rejects_bad_models_and_data(small):
    model, x, labels = small
    with pytest.raises(ValueError, match="Expected a kmtl.MultiTaskModel"):
        kmtl.grouping.suggest(lambda: keras.Sequential([keras.layers.Dense(1)]), (x, labels))
    with pytest.raises(ValueError, match=r"Task 'b1'.*|'b1'"):
        kmtl.grouping.suggest(model, (x, {"a1": labels["a1"], "a2": labels["a2"]}))
    with pytest.raises(ValueError, match=r"Expected `\(inputs, \{task_name: labels\}\)` arrays"):
        kmtl.grouping.suggest(model, x)
    inputs = keras.Input((8,), name="x")
    separate = kmtl.MultiTaskModel(
        inputs, {n: keras.layers.Dense(1, name=n)(inputs) for n in ("a", "b")}, tasks=[Task("a", "regression"),
                                                                                      Task("b", "regression")]
    )
    with pytest.raises(ValueError, match="the model has none"):
        kmtl.grouping.suggest(separate, (x, {"a": labels["a1"], "b": labels["b1"]}))


# === suggest: measured ===


@pytest.mark.slow  # ~4 s: two one-step measurements (tracing the step takes the time)
def test_one_step_affinity_equals_the_definitions(small):
    """With one full batch and one step, the lookahead entry [i, j] is 1 - L_j(θ_s - η ∇_s L_i) / L_j(θ_s) and the
    gradient entry the cosine of the shared gradients, both computed here by hand with assigned weights."""
    model, x, labels = small
    names = model.task_names
    rate = 0.3
    shared = model.shared_variables
    start = [v.numpy() for v in shared]

    def losses():
        predictions = model(x, training=True)
        return [keras.ops.mean((predictions[n] - labels[n]) ** 2) for n in names]

    import tensorflow as tf

    grads = []
    for i in range(len(names)):
        with tf.GradientTape() as tape:
            loss = losses()[i]
        grads.append([g.numpy() for g in tape.gradient(loss, shared)])
    before = np.array([float(v) for v in losses()])
    expected = np.zeros((3, 3))
    for i in range(3):
        for v, s, g in zip(shared, start, grads[i]):
            v.assign(s - rate * g)
        expected[i] = 1.0 - np.array([float(v) for v in losses()]) / before
        for v, s in zip(shared, start):
            v.assign(s)
    flat = np.stack([np.concatenate([g.ravel() for g in row]) for row in grads])
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)

    lookahead = kmtl.grouping.suggest(model, (x, labels), steps=1, batch_size=16, learning_rate=rate, seed=None)
    batches = tf.data.Dataset.from_tensor_slices((x, labels)).batch(16)  # a dataset works as arrays do
    gradient = kmtl.grouping.suggest(model, batches, method="gradient", steps=1, seed=None)
    np.testing.assert_allclose(lookahead.affinity, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gradient.affinity, unit @ unit.T, atol=1e-5)


@pytest.mark.slow  # ~1 s: one traced step
def test_weights_are_restored_when_measuring_fails():
    x, labels, names = grouped_regression((1, 1), n=8)
    model = trunk_model(names)
    model.compile(optimizer="sgd")
    before = [v.numpy().copy() for v in model.variables]

    def batches():
        yield x, labels  # one training step changes the weights
        raise RuntimeError("the data source failed")

    optimizer = keras.optimizers.SGD(0.1)
    with pytest.raises(RuntimeError, match="the data source failed"):
        measure_affinity(model, batches(), method="lookahead", steps=2, learning_rate=0.1, optimizer=optimizer)
    assert optimizer.iterations.numpy() == 1  # the step did happen
    assert all(np.array_equal(a, b) for a, b in zip([v.numpy() for v in model.variables], before))


@pytest.mark.slow  # ~1 s: one traced step
def test_a_diverging_measurement_says_so_and_restores_the_weights():
    x, labels, names = grouped_regression((1, 1), n=8)
    model = trunk_model(names)
    before = [v.numpy().copy() for v in model.variables]
    with pytest.raises(ValueError, match=r"diverged at step \d+.*Received: learning_rate=1e\+30"):
        kmtl.grouping.suggest(model, (x, labels), steps=5, batch_size=8, learning_rate=1e30)
    assert all(np.array_equal(a, b) for a, b in zip([v.numpy() for v in model.variables], before))


@pytest.mark.slow  # ~8 s: 300 measured training steps for each of two methods
def test_suggest_recovers_planted_groups_and_restores_the_weights():
    x, labels, names = grouped_regression((2, 2, 2), n=512)
    keras.utils.set_random_seed(0)
    model = trunk_model(names, dropout=0.1)
    model.compile(optimizer="adam")
    before = [v.numpy().copy() for v in model.variables]
    grouping = kmtl.grouping.suggest(model, (x, labels), steps=300, learning_rate=0.05)
    after = [v.numpy() for v in model.variables]
    assert all(np.array_equal(a, b) for a, b in zip(after, before))  # every weight (and the dropout seed) as it was
    assert grouping.groups == [["a1", "a2"], ["b1", "b2"], ["c1", "c2"]]
    assert max(grouping.scores, key=grouping.scores.get) == 3  # k=None chose three groups
    pairs = grouping.affinity + grouping.affinity.T
    same = np.equal.outer([n[0] for n in names], [n[0] for n in names]) & ~np.eye(6, dtype=bool)
    assert pairs[same].min() > 0 > pairs[~same & ~np.eye(6, dtype=bool)].max()

    gradient = kmtl.grouping.suggest(
        lambda: trunk_model(names), (x, labels), method="gradient", k=3, steps=300, learning_rate=0.05
    )
    assert gradient.groups == [["a1", "a2"], ["b1", "b2"], ["c1", "c2"]]
    np.testing.assert_allclose(gradient.affinity, gradient.affinity.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(gradient.affinity), 1.0, atol=1e-6)


# === Two levels: groups of groups (Lu et al. 2017: tasks split at more than one depth) ===


def two_level_regression(n=512, seed=0, noise=0.1):
    """Eight regression tasks in two groups of two groups of two: task `t` of subgroup `(s, h)` is
    `c_t x . (u_s + v_sh) / sqrt(2) + noise` with orthonormal `u_a, u_b, v_a1, v_a2, v_b1, v_b2` of the 8 inputs. The
    tasks of a subgroup want the same feature (cosine 1), subgroups of a group half the same (0.5), groups nothing in
    common (0). Names `a1 a2 | a3 a4 || b1 b2 | b3 b4`."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(8, 8)))[0].T
    x = rng.normal(size=(n, 8)).astype("float32")
    labels = {}
    for s, group in enumerate("ab"):
        for h in range(2):
            direction = (q[s] + q[2 + 2 * s + h]) / np.sqrt(2)
            for t in range(2):
                target = rng.uniform(0.5, 1.5) * x @ direction + noise * rng.normal(size=n)
                labels[f"{group}{2 * h + t + 1}"] = target.astype("float32")[:, None]
    return x, labels


def test_nest_groups_gathers_planted_groups_of_groups():
    rng = np.random.default_rng(0)
    blocks = np.repeat(np.arange(6), 2)  # 12 tasks, 6 groups of two, in 2 groups of 3 groups: {0, 1, 2}, {3, 4, 5}
    same, near = blocks[:, None] == blocks[None, :], blocks[:, None] // 3 == blocks[None, :] // 3
    affinity = np.where(same, 1.0, np.where(near, 0.1, -0.3)) + 0.05 * rng.normal(size=(12, 12))
    order = rng.permutation(12)
    affinity, blocks = affinity[np.ix_(order, order)], blocks[order]
    groups = [sorted(np.nonzero(blocks == b)[0].tolist()) for b in range(6)]
    nested = kmtl.grouping.nest_groups(affinity, groups, levels=2)
    assert sorted(sorted(sorted(g) for g in top) for top in nested) == [
        sorted(groups[:3]), sorted(groups[3:])
    ]
    assert kmtl.grouping.nest_groups(affinity, groups, levels=1) == groups
    assert kmtl.grouping.nest_groups(affinity, groups[:2], levels=3) == groups[:2]  # two groups: nothing to gather
    # Without a second level in the data (every pair of groups alike), no level is added.
    flat = np.where(same, 1.0, -0.3)[np.ix_(order, order)]
    assert kmtl.grouping.nest_groups(flat, groups, levels=2) == groups


def test_branched_nests_branches_for_groups_of_groups():
    x = keras.Input((4,), name="x")
    trunk = keras.layers.Dense(5, name="trunk")(x)
    tasks = [Task(n, "regression") for n in ("a1", "a2", "a3", "b1")]
    model = kmtl.grouping.branched(x, trunk, tasks, [[["a1", "a2"], "a3"], ["b1"]], branch_units=(3,))
    owners = {}
    for name in model.task_names:
        for v in model.task_variables[name]:
            owners[v.path] = name
    assert owners["branch_2/branch_2_dense_1/kernel"] == "b1" and owners["a3/kernel"] == "a3"
    shared = {v.path.split("/")[0] for v in model.shared_variables}
    assert shared == {"trunk", "branch_1", "branch_1_1"}  # a3 reads branch_1 directly; a1, a2 share branch_1_1 on it
    assert model.get_layer("branch_1_1").input.shape == (None, 3)
    with pytest.raises(ValueError, match=r"task\(s\) \['a1'\] in several groups"):
        kmtl.grouping.branched(x, trunk, tasks, [[["a1", "a2"], ["a1", "a3"]], ["b1"]])
    with pytest.raises(ValueError, match="an empty group"):
        kmtl.grouping.branched(x, trunk, tasks, [[["a1", "a2", "a3"], []], ["b1"]])


@pytest.mark.slow  # ~6 s: 200 measured training steps
def test_suggest_recovers_a_two_level_group_structure(tmp_path):
    x, labels = two_level_regression()
    order = ["a1", "b1", "a3", "b3", "a2", "b2", "a4", "b4"]  # interleaved: task order gives nothing away
    grouping = kmtl.grouping.suggest(lambda: trunk_model(order, width=4), (x, labels), steps=200, learning_rate=0.05,
                                     levels=2)
    assert grouping.groups == [[["a1", "a2"], ["a3", "a4"]], [["b1", "b2"], ["b3", "b4"]]]
    # The flat best keeps the four subgroups apart: only the second level joins a1 a2 with a3 a4.
    assert max(grouping.scores, key=grouping.scores.get) == 4
    inputs = keras.Input((8,), name="x")
    model = grouping.build(inputs, keras.layers.Dense(4, name="trunk")(inputs), branch_units=(2,))
    assert {v.path.split("/")[0] for v in model.shared_variables} == {
        "trunk", "branch_1", "branch_1_1", "branch_1_2", "branch_2", "branch_2_1", "branch_2_2"
    }
    if importlib.util.find_spec("matplotlib"):  # the heatmap orders the tasks by nested group
        assert grouping.plot(tmp_path / "nested.png").read_bytes().startswith(PNG_SIGNATURE)
