"""Single-task baselines, relative improvement and Δm."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from tiny import tiny_model

import kmtl
from kmtl.evaluation.baselines import compare_single_task
from kmtl.evaluation.deltas import (
    ComparisonResult,
    TaskComparison,
    delta_m,
    lower_is_better,
    primary_metric,
    relative_improvement,
    resolve_primary_metrics,
)

# === Δm by hand ===


def test_delta_m_by_hand_with_mixed_directions():
    mtl = {"acc": 0.80, "mae": 4.5, "auc": 0.70}
    single = {"acc": 0.75, "mae": 5.0, "auc": 0.80}
    lower = {"acc": False, "mae": True, "auc": False}
    # (+0.05/0.75 + 0.5/5.0 - 0.10/0.80) / 3 = (0.0666... + 0.1 - 0.125) / 3
    assert delta_m(mtl, single, lower) == pytest.approx((0.05 / 0.75 + 0.1 - 0.125) / 3)
    assert delta_m(mtl, single, lower, weights={"acc": 2.0, "mae": 1.0, "auc": 1.0}) == pytest.approx(
        (2 * 0.05 / 0.75 + 0.1 - 0.125) / 4
    )
    assert relative_improvement(6.0, 5.0, lower_is_better=True) == pytest.approx(-0.2)
    assert np.isnan(relative_improvement(1.0, 0.0, lower_is_better=False))
    assert np.isnan(delta_m({"acc": 0.8}, {"acc": 0.75, "mae": 5.0}, lower))


def test_lower_is_better_and_default_primary_metrics():
    assert lower_is_better("mae") and lower_is_better("val_nme") and lower_is_better("loss")
    assert not lower_is_better("auroc") and not lower_is_better("accuracy") and not lower_is_better("f1_macro")
    assert primary_metric(kmtl.Task("a", "binary")) == ("auroc", False)
    assert primary_metric(kmtl.Task("h", "multiclass", num_classes=3)) == ("accuracy", False)
    assert primary_metric(kmtl.Task("t", "multilabel", num_labels=2)) == ("auroc_macro", False)
    assert primary_metric(kmtl.Task("r", "regression")) == ("mae", True)
    landmarks = kmtl.Task("lm", "regression", units=4, metrics=[kmtl.metrics.NormalizedMeanError()])
    assert primary_metric(landmarks) == ("nme", True)


def test_primary_metric_overrides_are_checked_before_training():
    tasks = [kmtl.Task("a", "binary"), kmtl.Task("r", "regression")]
    chosen = resolve_primary_metrics(tasks, {"a": "f1", "r": ("rmse", True)})
    assert chosen == {"a": ("f1", False), "r": ("rmse", True)}
    with pytest.raises(ValueError, match=r"primary_metrics\['r'\]='auroc'"):
        resolve_primary_metrics(tasks, {"r": "auroc"})
    with pytest.raises(ValueError, match="unknown task"):
        resolve_primary_metrics(tasks, {"nope": "mae"})


def test_delta_m_over_seeds_with_intervals_and_paired_tests():
    rows = [
        TaskComparison("a", "binary", "auroc", False, False, mtl=[0.9, 0.8, 0.85], single=[0.8, 0.8, 0.8]),
        TaskComparison("r", "regression", "mae", True, False, mtl=[5.5, 6.0, 5.6], single=[5.0, 5.0, 5.0]),
        TaskComparison("d", "binary", "auroc", False, True, mtl=[0.6, 0.6, 0.6]),
    ]
    result = ComparisonResult(rows, seeds=[0, 1, 2])
    # Seed 0: (0.125 - 0.1) / 2; seed 1: (0 - 0.2) / 2; seed 2: (0.0625 - 0.12) / 2. The auxiliary task is left out.
    expected = [0.0125, -0.1, -0.02875]
    assert result.delta_m_values == pytest.approx(expected)
    assert result.delta_m == pytest.approx(np.mean(expected))
    assert result.delta_m_std == pytest.approx(np.std(expected, ddof=1))
    low, high = stats.t.interval(0.95, 2, loc=np.mean(expected), scale=stats.sem(expected))
    assert result.delta_m_interval == pytest.approx((low, high))
    assert result.delta_m_p_value == pytest.approx(stats.ttest_1samp(expected, 0.0).pvalue)
    # r: improvements -0.1, -0.2, -0.12, the interval below 0: flagged; a: +12.5%, 0, +6.25%, the interval holds 0.
    r_gain = [-0.1, -0.2, -0.12]
    assert result["r"].interval == pytest.approx((np.mean(r_gain), *stats.t.interval(
        0.95, 2, loc=np.mean(r_gain), scale=stats.sem(r_gain))))
    # The paired t-test of the scores normalised by the single-task score (lower is better: signs flipped).
    normalised = [-5.5 / 5.0, -6.0 / 5.0, -5.6 / 5.0]
    assert result["r"].p_value == pytest.approx(stats.ttest_rel(normalised, [-1.0, -1.0, -1.0]).pvalue)
    assert result.negative_transfer == ["r"] and result.positive_transfer == []
    assert result["r"].negative_transfer and result["a"].transfer is None
    table = result.table()
    assert "Negative transfer on: r." in table and "Δm = -3.88%" in table and "95% interval [" in table
    row = next(line for line in table.splitlines() if line.startswith("r "))
    assert "mae (lower better)" in row and "-14.00%" in row and row.rstrip().endswith("negative")
    assert result.to_dict()["tasks"]["r"]["relative_change"] == pytest.approx([0.1, 0.2, 0.12])


def test_transfer_is_flagged_only_where_the_interval_excludes_zero():
    # Eyeglasses at -0.00% (the example), a tiny but steady gain, and one repeat: only the steady gain.
    tiny = TaskComparison("eyeglasses", "binary", "auroc", False, False, mtl=[0.5, 0.5, 0.5], single=[0.5, 0.5, 0.5])
    steady = TaskComparison("s", "binary", "auroc", False, False, mtl=[0.81, 0.811, 0.812], single=[0.8] * 3)
    noisy = TaskComparison("n", "binary", "auroc", False, False, mtl=[0.7, 0.9, 0.75], single=[0.8] * 3)
    result = ComparisonResult([tiny, steady, noisy], seeds=[0, 1, 2])
    assert result.negative_transfer == [] and result.positive_transfer == ["s"]
    assert [r.transfer for r in result.rows] == [None, "positive", None]
    one = ComparisonResult([TaskComparison("a", "binary", "auroc", False, False, mtl=[0.6], single=[0.9])], [0])
    assert one.negative_transfer == [] and "no interval and no transfer flag" in one.table()


# === Training on a tiny 2-task model ===


def _tasks():
    return [kmtl.Task("a", "binary"), kmtl.Task("r", "regression"), kmtl.Task("d", "binary", auxiliary=True)]


def _build(tasks):
    return tiny_model(tasks=tasks, input_dim=3, trunk_units=4, activation="relu", head_units=(), seed=None,
                      compile=False)


def _compile(model):
    model.compile(keras.optimizers.Adam(0.01), run_eagerly=True)  # eager: tiny models train faster than tracing


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("int32"), "r": x[:, 1:2] * 2.0, "d": (x[:, 2] > 0).astype("int32")}
    y["a"][0] = 0 if y["a"][1] else 1  # both classes present
    return x, y


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_compare_trains_t_plus_one_models_with_the_same_budget():
    train, test = _data(24, 0), _data(12, 1)
    val = tf.data.Dataset.from_tensor_slices(_data(8, 2)).batch(8)
    lines = []
    result = compare_single_task(
        _build, _compile, train, val, test, _tasks(), fit_kwargs={"epochs": 1, "batch_size": 8, "verbose": 0},
        log=lines.append,
    )
    assert [run["model"] for run in result.runs] == ["multi-task", "a", "r"]  # no model for the auxiliary task
    assert [run["tasks"] for run in result.runs] == [["a", "r", "d"], ["a"], ["r"]]
    assert {(run["epochs"], run["steps"]) for run in result.runs} == {(1, 3)}
    assert len(lines) == 3
    for row in result.rows[:2]:
        assert len(row.mtl) == len(row.single) == 1 and np.isfinite(row.improvements[0])
    assert result["d"].single is None
    assert result.delta_m == pytest.approx(np.mean([result["a"].improvements[0], result["r"].improvements[0]]))


def test_single_task_data_from_a_callable_keeps_only_that_tasks_labels():
    seen = []

    def load(names):
        seen.append(list(names))
        x, y = _data(8, 3)
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    tasks = [kmtl.Task("a", "binary"), kmtl.Task("r", "regression")]
    result = compare_single_task(_build, _compile, load, None, load, tasks, primary_metrics={"a": "accuracy"},
                                 trivial=False, classical=False)
    assert seen == [["a", "r"], ["a", "r"], ["a"], ["a"], ["r"], ["r"]]
    assert result["a"].metric == "accuracy"
    with pytest.raises(ValueError, match=r"Asked for \['a'\], received a model with tasks \['r'\]"):
        compare_single_task(lambda tasks: _build(_tasks()[1:2]), _compile, load, None, load, tasks[:1])


@pytest.fixture
def tiny_recipe():
    """A registered two-task recipe on random vectors, compiled eagerly."""
    import kmtl.recipe

    def compile_model(model, weighting, learning_rate):
        model.compile(keras.optimizers.Adam(learning_rate), weighting=weighting, run_eagerly=True)
        return model

    def load_data(batch_size=8, seed=0, tasks=None):
        keep = tasks or ["a", "r"]
        splits = []
        for i, n in enumerate((16, 8, 8)):
            x, y = _data(n, seed + i)
            splits.append(tf.data.Dataset.from_tensor_slices((x, {k: y[k] for k in keep})).batch(batch_size))
        return kmtl.RecipeData(*splits, tasks=[t for t in _tasks() if t.name in keep])

    recipe = kmtl.Recipe(
        name="tiny", description="a tiny recipe for the CLI test", tasks=_tasks()[:2],
        build_model=lambda tasks=None: _build(tasks or _tasks()[:2]), compile_model=compile_model,
        load_data=load_data, defaults={"epochs": 3, "batch_size": 8, "weighting": "equal", "learning_rate": 0.01},
        quick={"epochs": 1},
    )
    kmtl.recipe.register_recipe(recipe)
    yield recipe
    kmtl.recipe.unregister_recipe("tiny")


def test_cli_compare_prints_the_table(tiny_recipe, tmp_path, monkeypatch, capsys):
    from kmtl.app.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compare", "tiny", "--quick", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "[seed 3, repeat 1/1] training the multi-task model" in out
    table = out[out.index("\ntask ") + 1:]
    assert table.splitlines()[2].split()[:3] == ["a", "binary", "auroc"]
    assert "Δm =" in table and "seed(s) 3" in table
    assert list(tmp_path.iterdir()) == []  # compare writes nothing


def test_deprecated_compare_recipe_paths_warn_and_forward():
    import kmtl.app.compare
    import kmtl.evaluation
    import kmtl.evaluation.compare

    with pytest.warns(DeprecationWarning, match="kmtl.app.compare.compare_recipe"):
        assert kmtl.evaluation.compare.compare_recipe is kmtl.app.compare.compare_recipe
    with pytest.warns(DeprecationWarning, match="kmtl.app.compare.compare_recipe"):
        assert kmtl.evaluation.compare_recipe is kmtl.app.compare.compare_recipe


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["compare", "facial-attributes", "--repeats", "0"], "expected a positive integer, got '0'"),
        (["compare", "facial-attributes", "--epochs", "x"], "expected a positive integer, got 'x'"),
        (["compare", "no-such-recipe"], "invalid choice: 'no-such-recipe'"),
    ],
)
def test_cli_compare_bad_arguments(argv, fragment, capsys):
    from kmtl.app.cli import main

    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2 and fragment in capsys.readouterr().err


@pytest.mark.slow  # trains the facial-attributes recipe's 9 models (QUICK settings): about 2 minutes on 2 cores
def test_compare_recipe_quick_facial_attributes():
    from kmtl.recipes import facial_attributes as fa

    from kmtl.app.compare import compare_recipe

    result = compare_recipe("facial-attributes", quick=True)
    assert [r.task for r in result.rows] == [t.name for t in fa.make_tasks()]
    assert len(result.runs) == 1 + len(fa.make_tasks())
    assert len({run["steps"] for run in result.runs}) == 1
    assert np.isfinite(result.delta_m)


def test_undefined_scores_make_delta_m_nan_and_are_named():
    rows = [
        TaskComparison("a", "binary", "auroc", False, False, mtl=[float("nan")], single=[0.8]),
        TaskComparison("r", "regression", "mae", True, False, mtl=[4.0], single=[5.0]),
    ]
    result = ComparisonResult(rows, seeds=[0])
    assert np.isnan(result.delta_m) and result.negative_transfer == []
    table = result.table()
    assert "Δm = nan" in table and "Undefined for a:" in table
    row = next(line for line in table.splitlines() if line.startswith("a "))
    assert row.split()[-6:] == ["nan", "0.8000", "nan", "-", "-", "n/a"]


# === Label fractions ===


def test_mask_labels_keeps_the_fraction_deterministically_nested_and_per_example():
    from kmtl.evaluation.label_fraction import mask_labels

    n = 4000
    tasks = [kmtl.Task("a", "binary"), kmtl.Task("r", "regression"),
             kmtl.Task("s", "multiclass", num_classes=3, per_step=True)]
    y = {"a": np.ones(n, "int32"), "r": np.ones((n, 1), "float32"), "s": np.zeros((n, 5), "int32")}
    y["a"][:100] = -1  # missing already
    kept = {}
    for fraction in (0.3, 0.03):
        masked = mask_labels(y, tasks, fraction, seed=7)
        count = int((masked["a"][100:] == 1).sum())
        low, high = stats.binom.ppf([0.0005, 0.9995], n - 100, fraction)  # a 99.9% binomial interval
        assert low <= count <= high
        assert (masked["a"][:100] == -1).all()
        assert np.isnan(masked["r"][:, 0]).sum() == pytest.approx(n * (1 - fraction), rel=0.1)
        steps = masked["s"]
        assert ((steps == 0).all(axis=1) | (steps == -1).all(axis=1)).all()  # whole sequences kept or dropped
        kept[fraction] = masked["a"] == 1
    assert (kept[0.03] <= kept[0.3]).all()  # nested: the labels kept at 0.03 are kept at 0.3
    again, other = mask_labels(y, tasks, 0.3, seed=7), mask_labels(y, tasks, 0.3, seed=8)
    np.testing.assert_array_equal(again["a"] == 1, kept[0.3])
    assert not np.array_equal(other["a"] == 1, kept[0.3])
    assert not np.array_equal(np.isnan(again["r"][:, 0]), again["a"] == -1)  # tasks drawn independently
    assert (y["a"][100:] == 1).all() and mask_labels(y, tasks, 1.0, seed=7)["a"] is not y["a"]


@pytest.mark.slow  # reads tf.data pipelines three times: about 3 s on 2 cores
def test_masked_training_labels_are_the_same_for_every_model_of_a_repeat(tiny_recipe):
    from kmtl.app.compare import _Runs
    from kmtl.evaluation.arrays import collect_examples

    tasks = _tasks()[:2]
    runs = _Runs(tiny_recipe, tiny_recipe.settings(quick=True), 0, resplit=False)
    train, val, test = runs.masked(0, 3, tasks, 0.5)
    both = collect_examples(train(["a", "r"]), tasks)[1]
    single = collect_examples(train(["a"]), tasks[:1])[1]
    np.testing.assert_array_equal(both["a"], single["a"])
    again = collect_examples(runs.masked(1, 3, tasks, 0.5)[0](["a", "r"]), tasks)[1]
    np.testing.assert_array_equal(again["a"], both["a"])
    assert 0 < (both["a"] == -1).sum() < len(both["a"])
    validation = collect_examples(val(["a"]), tasks[:1])[1]
    assert (validation["a"] != -1).all()  # validation labels untouched


@pytest.mark.parametrize("text", ["0", "1.5", "", ",", "a", "0.3,-1", "0.3,"])
def test_cli_label_fraction_refuses_bad_values(text, capsys):
    from kmtl.app.cli import main

    with pytest.raises(SystemExit) as raised:
        main(["compare", "facial-attributes", "--label-fraction", text])
    error = capsys.readouterr().err
    assert raised.value.code == 2
    assert f"argument --label-fraction: expected a comma-separated list of fractions in (0, 1], got {text!r}" in error


def test_cli_compare_flags_parse():
    from kmtl.app.cli import build_parser

    args = build_parser().parse_args(["compare", "facial-attributes", "--label-fraction", "1,0.3,0.1,0.03",
                                      "--repeats", "3", "--resplit", "--plot", "f.png", "--no-classical"])
    assert args.label_fractions == [1.0, 0.3, 0.1, 0.03] and args.repeats == 3 and args.resplit
    assert args.plot == "f.png" and args.classical is False
    defaults = build_parser().parse_args(["compare", "facial-attributes"])
    assert defaults.label_fractions is None and not defaults.resplit and defaults.classical


def test_compare_checks_fractions_and_the_plot_path_before_training(tiny_recipe, tmp_path):
    from kmtl.app.compare import compare_recipe

    with pytest.raises(ValueError, match=r"Expected fractions in \(0, 1\]"):
        compare_recipe("tiny", label_fractions=[0.5, 0.0])
    with pytest.raises(ValueError, match="Expected at least one fraction"):
        compare_recipe("tiny", label_fractions=[])
    with pytest.raises(ValueError, match="pass `label_fractions` too"):
        compare_recipe("tiny", plot=tmp_path / "p.png")
    (tmp_path / "p.png").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="Refusing to overwrite"):
        compare_recipe("tiny", label_fractions=[1.0], plot=tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes() == b"mine"


@pytest.mark.slow  # trains 6 tiny models eagerly (2 fractions x 3 models): about 10 s on 2 cores
def test_compare_recipe_over_label_fractions_with_a_plot(tiny_recipe, tmp_path):
    from kmtl.app.compare import compare_recipe

    result = compare_recipe("tiny", quick=True, label_fractions=[0.5, 1], classical=False,
                            plot=tmp_path / "fractions.png")
    assert result.fractions == [1.0, 0.5]
    for comparison in result.results.values():
        assert comparison.seeds == [0] and len(comparison.runs) == 3
        assert len({run["steps"] for run in comparison.runs}) == 1  # the same budget for every model
        assert len(comparison["a"].trivial) == 1 and comparison["a"].classical is None
    assert "Label fraction 0.5: each training example kept" in result.table()
    assert (tmp_path / "fractions.png").read_bytes()[:4] == b"\x89PNG"
    summary = result.summary().splitlines()
    assert summary[1].split()[:3] == ["label", "fraction", "Δm"] and summary[3].split()[0] == "1"


@pytest.mark.slow  # three 1-trial searches and three models of the tiny recipe, eagerly: about 10 s on 2 cores
def test_compare_tunes_each_model_with_the_same_number_of_trials(tiny_recipe, monkeypatch):
    import keras_tuner

    from kmtl.app.compare import compare_recipe

    searches = []
    original = keras_tuner.RandomSearch.search

    def search(self, *args, **kwargs):
        searches.append((self.oracle.max_trials, kwargs["epochs"], sorted(self.hypermodel.space)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras_tuner.RandomSearch, "search", search)
    result = compare_recipe("tiny", quick=True, tune_trials=1, classical=False)
    # The same trials and epochs for each model; single-task searches leave out the weighting.
    assert searches == [(1, 1, ["learning_rate", "weighting"]), (1, 1, ["learning_rate"]), (1, 1, ["learning_rate"])]
    assert any(note.startswith("Tuned: each model had its own 1-trial random search") for note in result.notes)
    assert len({run["steps"] for run in result.runs}) == 1


def test_folds_need_a_recipe_that_declares_a_fold_setting(tiny_recipe):
    from kmtl.app.compare import compare_recipe

    with pytest.raises(ValueError, match="does not declare a `fold` data setting.*--resplit"):
        compare_recipe("tiny", folds=3)
    with pytest.raises(ValueError, match="Expected an int >= 2. Received: folds=1"):
        compare_recipe("tiny", folds=1)


@pytest.mark.slow  # trains 6 tiny models eagerly (2 folds x 3 models): about 8 s on 2 cores
def test_compare_over_grouped_folds_pairs_each_fold(tiny_recipe):
    import dataclasses

    import kmtl.recipe
    from kmtl.app.compare import compare_recipe

    asked = []

    def load_data(batch_size=8, seed=0, tasks=None, fold=None):
        asked.append(fold)
        x, y = _data(40, seed)
        groups = np.arange(40) // 4  # ten subjects of four examples
        test = np.isin(groups % fold[1], [fold[0]]) if fold else groups >= 8
        keep = tasks or ["a", "r"]
        parts = [~test & (groups % 5 != 4), ~test & (groups % 5 == 4), test]
        splits = [tf.data.Dataset.from_tensor_slices((x[p], {k: y[k][p] for k in keep})).batch(batch_size)
                  for p in parts]
        return kmtl.RecipeData(*splits, tasks=[t for t in _tasks() if t.name in keep])

    folded = dataclasses.replace(tiny_recipe, name="tiny-folds", load_data=load_data, data_settings=("fold",))
    kmtl.recipe.register_recipe(folded)
    try:
        result = compare_recipe("tiny-folds", quick=True, folds=2, classical=False)
    finally:
        kmtl.recipe.unregister_recipe("tiny-folds")
    assert result.seeds == [0, 0] and len(result["a"].mtl) == 2
    assert {(0, 2), (1, 2)} <= set(asked) and None in asked  # the tasks are read once without a fold
    assert any("one per fold" in note for note in result.notes)
