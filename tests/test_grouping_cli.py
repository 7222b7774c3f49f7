"""`kmtl group RECIPE` (kmtl.app.group): affinity of a recipe's tasks, the suggested groups, the builder call a
user pastes, the heatmap, training and export of the suggested model, and the layout comparison."""

import dataclasses
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl import Task
from kmtl.app.cli import main
from kmtl.app.group import LayoutComparison, group_recipe

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["a1", "b1", "a2", "b2"]  # groups a and b, interleaved so that task order does not give them away


def _data(n, seed):
    """Tasks of group g are `s_t (x . u_g) + 0.1 noise`, orthonormal directions `u_a`, `u_b` of the 8 inputs."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))[0][:, :2].T
    scales = {"a1": 1.0, "b1": 0.7, "a2": 0.6, "b2": 1.3}
    x = rng.normal(size=(n, 8)).astype("float32")
    labels = {
        name: (scales[name] * x @ directions["ab".index(name[0])] + 0.1 * rng.normal(size=n)).astype("float32")[:, None]
        for name in NAMES
    }
    return {"x": x}, labels


def _build(width=8, tasks=None):
    x = keras.Input((8,), name="x")
    trunk = keras.layers.Dense(width, activation="tanh", name="trunk")(x)
    return kmtl.builders.hard_sharing({"x": x}, trunk, tasks or [Task(n, "regression") for n in NAMES])


def _load(batch_size=32, seed=0, tasks=None):
    splits = []
    for i, n in enumerate((512, 64, 128)):
        x, y = _data(n, seed + i)
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        if i == 0:
            dataset = dataset.shuffle(n, seed=seed)
        splits.append(dataset.batch(batch_size))
    return kmtl.RecipeData(*splits, tasks=[Task(n, "regression") for n in NAMES])


def _compile(model, weighting="equal", learning_rate=0.01):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), weighting=weighting)
    return model


@pytest.fixture(scope="module")
def planted_recipe():
    recipe = kmtl.Recipe(
        name="planted-groups", description="two planted groups of regression tasks (tests)",
        tasks=[Task(n, "regression") for n in NAMES], build_model=_build, compile_model=_compile, load_data=_load,
        defaults={"epochs": 2, "batch_size": 32, "weighting": "equal", "learning_rate": 0.01, "width": 8},
        model_settings=("width",), quick={"epochs": 1},
    )
    kmtl.recipe.register_recipe(recipe)
    yield recipe
    kmtl.recipe.unregister_recipe("planted-groups")


@pytest.mark.slow  # ~10 s: 80 measured steps, one training of 2 epochs, an export
def test_group_recovers_planted_groups_trains_and_exports_the_suggested_model(planted_recipe, tmp_path, capsys):
    plot = tmp_path / "affinity.png"
    run = group_recipe("planted-groups", epochs=5, lookahead_rate=0.05, branch_units=(4,), plot=plot, train=True,
                       export_dir=tmp_path / "exports", verbose=0)
    out = capsys.readouterr().out
    assert run.grouping.groups == [["a1", "a2"], ["b1", "b2"]]
    assert run.trunk == "trunk"
    assert "80 steps" in out and "a1 " in out.split("Task affinity")[1]  # the matrix, labelled
    assert "k=2" in out and "<- suggested" in out.split("k=2")[1].splitlines()[0]
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    # The exported version serves what the trained Keras model predicts.
    assert run.export_path == tmp_path / "exports" / "planted_groups_grouped" / "1"
    x, _ = _data(16, 7)
    serve = tf.saved_model.load(str(run.export_path)).signatures["serving_default"]
    served = serve(x=tf.constant(x["x"]))
    predicted = run.model.predict(x, verbose=0)
    for name in NAMES:
        np.testing.assert_allclose(served[name].numpy(), predicted[name][:, 0], atol=1e-5)
    assert [t.name for t in run.model.tasks] == NAMES
    assert run.report["a1"]["mae"] < 0.5  # learnt (the labels' spread is about 0.6-1.3)
    # The printed lines, pasted into a script, build the same model.
    code = out[out.index("    import kmtl"):].split("\n\n")[0]
    scope = {}
    exec(textwrap.dedent(code), scope)
    pasted = scope["model"]
    assert [(layer.name, tuple(w.shape for w in layer.weights)) for layer in pasted.layers] == [
        (layer.name, tuple(w.shape for w in layer.weights)) for layer in run.model.layers
    ]
    # Never over the user's file.
    with pytest.raises(FileExistsError, match="affinity.png"):
        group_recipe("planted-groups", plot=plot)


@pytest.mark.slow  # ~6 s: 16 measured steps, two trainings of one epoch
def test_cli_group_compares_layouts_on_the_same_trunk(planted_recipe, capsys):
    # One group asked for: the suggested layout is hard sharing, trained once and reported in both columns.
    assert main(["group", "planted-groups", "--quick", "--groups", "1", "--compare", "--branch-units", "4",
                 "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "groups: [['a1', 'b1', 'a2', 'b2']]" in out
    table = out[out.index("Test scores"):].splitlines()
    assert table[1].split() == ["task", "(metric)", "hard", "sharing", "suggested", "per", "task"]
    rows = [row.split() for row in table[2:7]]
    assert [row[0] for row in rows[:4]] == NAMES and table[6].startswith("Δm vs per task")
    assert all(row[-3] == row[-2] for row in rows) and rows[4][-1] == "0.0000"
    assert rows[0][-3] != rows[0][-1]  # a branch per task is another model


def test_layout_table_means_spreads_and_delta_m():
    comparison = LayoutComparison(
        layouts={"hard": [["a", "b"]], "per task": [["a"], ["b"]]},
        metrics={"a": ("mae", True), "b": ("auroc", False)},
        scores={"hard": [{"a": 1.0, "b": 0.9}, {"a": 2.0, "b": 0.8}],
                "per task": [{"a": 2.0, "b": 0.8}, {"a": 2.0, "b": 0.8}]},
    )
    rows = comparison.table().splitlines()
    assert rows[1].split() == ["a", "(mae)", "1.5000", "±", "0.7071", "2.0000", "±", "0.0000"]
    # Δm per repeat: the mean of (+50%, +12.5%) = 31.25%, then 0%; mean 15.625%, sd 31.25 / sqrt(2).
    assert rows[3].split()[-6:] == ["15.6250", "±", "22.0971", "0.0000", "±", "0.0000"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["group", "forecasting", "--export-dir", "x"], "pass `train=True` (--train) too"),
        (["group", "forecasting", "--plot", "heat.pdf"], "Expected a path ending in .png"),
        (["group", "forecasting", "--lookahead-rate", "0"], "expected a positive number"),
        (["group", "forecasting", "--branch-units", "32,0"], "expected positive integers"),
    ],
)
def test_bad_group_arguments_are_refused_before_any_data_loads(argv, fragment, capsys):
    try:
        status = main(argv)
    except SystemExit as raised:
        status = raised.code
    assert status == 2
    assert fragment in capsys.readouterr().err


def test_train_and_compare_need_a_trunk_and_say_so_before_measuring(planted_recipe):
    def towers(width=8, tasks=None):  # each task its own layer on the input: nothing shared to branch from
        x = keras.Input((8,), name="x")
        return kmtl.MultiTaskModel({"x": x}, {n: keras.layers.Dense(1, name=n)(x) for n in NAMES},
                                   tasks=[Task(n, "regression") for n in NAMES])

    recipe = dataclasses.replace(planted_recipe, name="towers", build_model=towers)
    with pytest.raises(ValueError, match="no trunk to branch from: --train and --compare need one"):
        group_recipe(recipe, compare=True)


def test_group_help_imports_no_tensorflow():
    code = (
        "import sys\nfrom kmtl.app.cli import main\n"
        "try:\n    main(['group', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in done.stderr and "--lookahead-rate" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow  # ~0.7 s: builds three models
def test_shared_features_is_the_last_complete_shared_vector():
    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(5, name="h1")(x)
    h = keras.layers.Dense(4, name="h2")(h)
    tasks = [Task("a", "regression"), Task("b", "binary")]
    assert kmtl.grouping.shared_features(kmtl.builders.hard_sharing(x, h, tasks))[0] == "h2"
    # Split layers share part of each layer: the last complete shared vector is what they read.
    split = kmtl.builders.split(x, tasks, units=(4,), shared_fraction=0.5, input_features=h)
    assert kmtl.grouping.shared_features(split)[0] == "h2"
    # A task that reads the input beside the trunk: no single trunk.
    side = {"a": keras.layers.Dense(1, name="a")(h), "b": keras.layers.Dense(1, name="b", activation="sigmoid")(
        keras.layers.Concatenate()([h, x]))}
    assert kmtl.grouping.shared_features(kmtl.MultiTaskModel(x, side, tasks=tasks)) is None
    # Tasks per token read a sequence; the shared (batch, steps) token ids are no feature vector.
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    embedded = keras.layers.Embedding(10, 3, name="embedding")(keras.layers.Hashing(10, name="ids")(tokens))
    per_step = [Task("p", "regression", per_step=True), Task("q", "regression", per_step=True)]
    heads = {t.name: keras.layers.Dense(1, name=t.name)(embedded) for t in per_step}
    assert kmtl.grouping.shared_features(kmtl.MultiTaskModel(tokens, heads, tasks=per_step)) is None
