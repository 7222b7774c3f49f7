"""keras-tuner integration: hypermodels for builders and recipes, the multi-task objective, `kmtl tune`."""

import math

import keras
import keras_tuner
import numpy as np
import pytest

import kmtl
from kmtl.app.cli import main
from kmtl.tuning.hypermodels import BuilderHyperModel, supports_task_learning_rates
from kmtl.tuning.objective import MultiTaskObjective, MultiTaskScore, metric_direction
from kmtl.tuning.recipe_hypermodel import RecipeHyperModel
from kmtl.tuning.space import check_entry, decode, sample
from kmtl.weighting import STRATEGIES

TASKS = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")]
BUILDERS = ["hard_sharing", "mmoe", "ple", "cross_stitch", "sluice", "soft_sharing", "split", "stacked_heads_model"]
TINY_HARD = {"shared_units": [8, 16], "weighting": ["equal", "uncertainty"]}
EAGER = {"run_eagerly": True}  # a few tiny steps: cheaper than tracing the train and test functions


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("float32"), "b": (2.0 * x[:, 1:2]).astype("float32")}
    return x, y


# === Hypermodels for the builders ===


@pytest.mark.parametrize("builder", BUILDERS + ["hierarchy"])
def test_builder_hypermodel_builds_compiled_model_with_task_outputs(builder):
    kwargs = {"builder_kwargs": {"levels": {"a": 1, "b": 2}}} if builder == "hierarchy" else {}
    hypermodel = BuilderHyperModel(builder, inputs=4, tasks=TASKS, search_space={"weighting": "uncertainty"},
                                   **kwargs)
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert isinstance(model, kmtl.MultiTaskModel)
    assert sorted(model.output) == ["a", "b"] and model.name == builder
    assert isinstance(model.weighting, STRATEGIES["uncertainty"])
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)  # the default learning rate


def test_default_weighting_is_equal_and_every_strategy_is_offered():
    hp = keras_tuner.HyperParameters()
    model = BuilderHyperModel("hard_sharing", inputs=4, tasks=TASKS).build(hp)
    assert isinstance(model.weighting, STRATEGIES["equal"])
    offered = hp.get_config()["space"]
    weighting = next(s["config"] for s in offered if s["config"]["name"] == "weighting")
    assert weighting["values"][0] == "equal" and sorted(weighting["values"]) == sorted(STRATEGIES)


def test_hard_sharing_space_contents():
    hp = keras_tuner.HyperParameters()
    BuilderHyperModel("hard_sharing", inputs=4, tasks=TASKS).build(hp)
    space = {s.name: s for s in hp.space}
    assert sorted(space) == ["dropout", "head_units", "learning_rate", "shared_layers", "shared_units", "weighting"]
    assert (space["shared_layers"].min_value, space["shared_layers"].max_value) == (1, 3)
    assert space["shared_units"].values == [16, 32, 64, 128]
    assert (space["dropout"].min_value, space["dropout"].max_value, space["dropout"].step) == (0.0, 0.3, 0.1)
    lr = space["learning_rate"]
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")


@pytest.mark.parametrize(
    "builder, extra",
    [
        ("mmoe", {"num_experts", "expert_units", "shared_layers", "head_units", "dropout"}),
        ("ple", {"num_levels", "shared_experts", "task_experts", "expert_units", "head_units", "dropout"}),
        ("cross_stitch", {"shared_layers", "shared_units", "head_units"}),
        ("soft_sharing", {"shared_layers", "shared_units", "strength", "head_units", "dropout"}),
        ("split", {"shared_layers", "shared_units", "shared_fraction", "head_units"}),
    ],
)
def test_builder_specific_spaces(builder, extra):
    assert set(BuilderHyperModel(builder, inputs=4, tasks=TASKS).space) == extra | {"learning_rate", "weighting"}


def test_trial_values_reach_the_model():
    hypermodel = BuilderHyperModel("hard_sharing", inputs={"x1": (3,), "x2": (1,)}, tasks=TASKS)
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(shared_layers=3, shared_units=16, head_units=16, dropout=0.2, learning_rate=5e-3,
                     weighting="uncertainty")
    model = hypermodel.build(hp)
    assert [model.get_layer(f"shared_dense_{i}").units for i in (1, 2, 3)] == [16, 16, 16]
    assert sorted(model.input) == ["x1", "x2"]
    hidden = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense) and layer.units == 16]
    assert len(hidden) == 3 + 2  # three trunk layers, one hidden layer per head
    assert isinstance(model.weighting, STRATEGIES["uncertainty"])
    assert float(model.optimizer.learning_rate) == pytest.approx(5e-3)


def test_mmoe_trial_values_reach_the_model():
    hypermodel = BuilderHyperModel("mmoe", inputs=4, tasks=TASKS)
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(num_experts=6, expert_units=16, shared_layers=2)
    model = hypermodel.build(hp)
    assert tuple(model.get_layer("gate_a").output.shape) == (None, 6)
    assert list(model.get_layer("experts").hidden_units) == [16]


def test_search_space_overrides_choices_of_tuples_and_fixed_values():
    hypermodel = BuilderHyperModel("cross_stitch", inputs=4, tasks=TASKS,
                                   search_space={"shared_units": [8, 12], "head_units": 4, "weighting": ["equal"]})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert model.get_layer("tower_a_1").units == 8
    assert hp.values["head_units"] == 4
    assert hypermodel.decode(hp.values)["shared_units"] == 8


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"builder": "deep"}, "Received: builder='deep'"),
        ({"inputs": 0}, "Received: inputs=0"),
        ({"search_space": {"experts": [2]}}, "does not use"),
        ({"builder_kwargs": {"head_units": (4,)}}, "sets ['head_units']"),
        ({"weightings": ["loudest"]}, "Received: weightings=['loudest']"),
        ({"search_space": {"dropout": {"min": 0.5, "max": 0.1}}}, "Invalid search-space entry `dropout`"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    args = {"builder": "hard_sharing", "inputs": 4, "tasks": TASKS, **kwargs}
    with pytest.raises(ValueError) as raised:
        BuilderHyperModel(args.pop("builder"), **args)
    assert fragment in str(raised.value)


def test_per_task_learning_rates():
    assert supports_task_learning_rates()
    hypermodel = BuilderHyperModel("hard_sharing", inputs=4, tasks=TASKS, task_learning_rates=True)
    assert {"lr_multiplier_a", "lr_multiplier_b"} <= set(hypermodel.space)
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(learning_rate=2e-3, lr_multiplier_a=0.5, lr_multiplier_b=4.0)
    model = hypermodel.build(hp)
    optimizers = model.optimizer.optimizers
    assert float(optimizers["a"].learning_rate) == pytest.approx(1e-3)
    assert float(optimizers["b"].learning_rate) == pytest.approx(8e-3)
    assert float(model.optimizer.default.learning_rate) == pytest.approx(2e-3)


# === Search-space entries ===


def test_space_entries_sample_and_decode():
    hp = keras_tuner.HyperParameters()
    assert sample(hp, "widths", [(16, 32), (8,)]) == (16, 32)
    assert hp.values["widths"] == "(16, 32)"
    assert decode({"widths": [(16, 32), (8,)]}, {"widths": "(8,)"}) == {"widths": (8,)}
    assert sample(hp, "layers", {"min": 1, "max": 4, "default": 2}) == 2 and isinstance(hp.values["layers"], int)
    assert sample(hp, "rate", {"min": 1e-3, "max": 1e-1, "sampling": "log"}) == pytest.approx(1e-3)
    assert sample(hp, "act", {"values": ["relu", "gelu"], "default": "gelu"}) == "gelu"
    assert sample(hp, "filters", (4, 8)) == (4, 8)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ([], "non-empty"),
        ([1, 1], "distinct"),
        ({"min": 1}, "a list of choices"),
        ({"min": 0.0, "max": 1.0, "sampling": "log"}, '"min" > 0'),
        ({"min": 0, "max": 1, "sampling": "cubic"}, '"sampling"'),
        ({"values": [1, 2], "default": 3}, '"default" that is one of'),
        ({"min": 0.0, "max": 1.0, "step": -1}, 'positive "step"'),
    ],
)
def test_bad_space_entries(spec, fragment):
    with pytest.raises(ValueError, match="Invalid search-space entry `x`") as raised:
        check_entry("x", spec)
    assert fragment in str(raised.value)


# === The multi-task objective ===


def test_objective_normalisation_hand_computed():
    objective = MultiTaskObjective({"a": "accuracy", "b": "mae"}, weights={"a": 1.0, "b": 3.0}, scales={"b": 2.0})
    logs = {"val_a_accuracy": 0.8, "val_b_mae": 3.0, "a_accuracy": 0.6, "b_mae": 2.0}
    # a: 0.8 as is; b: 1 / (1 + 3 / 2) = 0.4; weighted mean (0.8 + 3 * 0.4) / 4 = 0.5.
    assert objective.score(logs) == pytest.approx(0.5)
    # Training logs: (0.6 + 3 * 1 / (1 + 1)) / 4 = 0.525.
    assert objective.score(logs, prefix="") == pytest.approx(0.525)
    assert objective.name == "val_mtl_score" and objective.direction == "max"
    assert objective.get_value(logs) == pytest.approx(0.5)  # computed when the callback has not logged it


def test_objective_with_baselines_is_one_plus_delta_m():
    objective = MultiTaskObjective({"a": "accuracy", "b": "mae"}, baselines={"a": 0.5, "b": 2.0})
    # Δm = ((0.8 - 0.5) / 0.5 - (3 - 2) / 2) / 2 = (0.6 - 0.5) / 2 = 0.05.
    assert objective.score({"val_a_accuracy": 0.8, "val_b_mae": 3.0}) == pytest.approx(1.05)


def test_objective_from_tasks_skips_auxiliary_tasks_and_reads_primary_metrics():
    tasks = TASKS + [kmtl.Task("domain", "binary", auxiliary=True),
                     kmtl.Task("hair", "multiclass", num_classes=3, metrics=["top_2_accuracy"])]
    objective = MultiTaskObjective.from_tasks(tasks)
    # AUROC and MAE as evaluation's reference table; no accuracy logged for `hair`: its first metric.
    assert objective.metrics == {"a": "auc", "b": "mae", "hair": "top_2_accuracy"}
    assert objective.directions == {"a": "max", "b": "min", "hair": "max"}


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"metrics": {}}, "Received: metrics={}"),
        ({"metrics": {"a": "wobble"}}, "directions"),
        ({"weights": {"c": 1.0}}, "['c']"),
        ({"weights": {"a": -1.0}}, "Expected a number >= 0 for task 'a'"),
        ({"directions": {"a": "up"}}, "Expected 'max' or 'min'"),
        ({"baselines": {"b": 0.0}}, "Expected a number > 0 for task 'b'"),
    ],
)
def test_objective_bad_arguments(kwargs, fragment):
    kwargs = {"metrics": {"a": "accuracy", "b": "mae"}, **kwargs}
    with pytest.raises(ValueError) as raised:
        MultiTaskObjective(kwargs.pop("metrics"), **kwargs)
    assert fragment in str(raised.value)


def test_score_callback_names_the_task_of_a_missing_metric():
    score = MultiTaskScore(MultiTaskObjective({"a": "auc"}))
    with pytest.raises(ValueError, match="Task 'a': the objective reads `a_auc`"):
        score.on_epoch_end(0, {"a_accuracy": 0.5})


def test_metric_directions():
    assert [metric_direction(m) for m in ("accuracy", "auc", "f1_score", "mae", "rmse", "loss", "nme")] == [
        "max", "max", "max", "min", "min", "min", "min"]


def test_hypermodel_fit_puts_the_score_in_history_before_other_callbacks(data):
    x, y = data
    hypermodel = BuilderHyperModel("hard_sharing", inputs=4, tasks=TASKS, search_space=TINY_HARD,
                                   compile_kwargs=EAGER)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    seen = []
    reader = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs.get("val_mtl_score")))
    assert hypermodel.objective.references is None
    history = hypermodel.fit(hp, model, x[:32], {k: v[:32] for k, v in y.items()},
                             validation_data=(x[32:], {k: v[32:] for k, v in y.items()}), epochs=2, batch_size=16,
                             verbose=0, callbacks=[reader])
    logs = history.history
    # The first fit fitted the trivial predictors on the training split, scored on the validation split.
    refs = hypermodel.objective.references
    median = np.median(y["b"][:32])
    assert refs["a"] == pytest.approx(0.5, abs=1e-6)  # the class prior's AUROC
    assert refs["b"] == pytest.approx(np.mean(np.abs(y["b"][32:] - median)), rel=1e-5)
    for epoch in range(2):
        # Each task's skill over its trivial predictor, averaged: (m - r) / (1 - r) and 1 - m / r.
        skills = [(logs[f"{p}a_auc"][epoch] - refs["a"]) / (1 - refs["a"]) for p in ("val_", "")], [
            1 - logs[f"{p}b_mae"][epoch] / refs["b"] for p in ("val_", "")]
        assert logs["val_mtl_score"][epoch] == pytest.approx((skills[0][0] + skills[1][0]) / 2, abs=1e-12)
        assert seen[epoch] == logs["val_mtl_score"][epoch]  # a user callback already sees it
        assert logs["mtl_score"][epoch] == pytest.approx((skills[0][1] + skills[1][1]) / 2, abs=1e-12)


# keras-tuner reloads only the weights into a fresh model, whose optimizer has no variables yet: Keras says so.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_tiny_search_records_the_hand_computed_score(data, tmp_path):
    x, y = data
    objective = MultiTaskObjective({"a": "accuracy", "b": "mae"}, weights={"a": 3.0, "b": 1.0}, scales={"b": 2.0})
    hypermodel = BuilderHyperModel("hard_sharing", inputs=4, tasks=TASKS, search_space=TINY_HARD, objective=objective,
                                   compile_kwargs=EAGER)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=2, seed=3,
                                     directory=str(tmp_path), project_name="tiny")
    tuner.search(x, y, validation_data=(x[:24], {k: v[:24] for k, v in y.items()}), epochs=1, batch_size=16,
                 verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2 and all(t.status == "COMPLETED" for t in trials)
    for trial in trials:
        accuracy = trial.metrics.get_last_value("val_a_accuracy")
        mae = trial.metrics.get_last_value("val_b_mae")
        assert trial.score == pytest.approx((3 * accuracy + 1 / (1 + mae / 2)) / 4, abs=1e-9)
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == max(t.score for t in trials)
    # The recorded metrics are the validation metrics of the saved model: evaluate it again and recompute.
    model = tuner.get_best_models(1)[0]
    results = model.evaluate(x[:24], {k: v[:24] for k, v in y.items()}, verbose=0, return_dict=True)
    again = (3 * results["a_accuracy"] + 1 / (1 + results["b_mae"] / 2)) / 4
    assert again == pytest.approx(best.score, abs=1e-5)


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_objective_scores_a_plain_build_function_without_the_callback(data, tmp_path):
    x, y = data
    hypermodel = BuilderHyperModel("hard_sharing", inputs=4, tasks=TASKS, search_space=TINY_HARD,
                                   compile_kwargs=EAGER)
    tuner = keras_tuner.RandomSearch(lambda hp: hypermodel.build(hp), objective=hypermodel.objective, max_trials=1,
                                     directory=str(tmp_path), project_name="plain")
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=16, verbose=0)
    trial = tuner.oracle.get_best_trials(1)[0]
    auc, mae = (trial.metrics.get_last_value(k) for k in ("val_a_auc", "val_b_mae"))
    expected = (auc + 1 / (1 + mae)) / 2
    assert trial.score == pytest.approx(expected, abs=1e-9)


# === Recipes and the CLI ===


def test_recipe_hypermodel_reads_search_space_and_routes_names():
    from kmtl.recipes import facial_attributes as fa

    space = {"filters": [(4, 8)], "fusion_units": 8, "head_units": [(4,)], "learning_rate": 1e-3,
             "weighting": ["equal"]}
    hypermodel = RecipeHyperModel(fa.RECIPE, quick=True, search_space=space)
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert sorted(model.output) == sorted(t.name for t in fa.TASKS)
    assert model.input["image"].shape[1] == fa.QUICK["image_size"]  # a fixed setting build_model takes
    assert model.get_layer("conv2a").filters == 8 and model.get_layer("fusion").units == 8
    assert isinstance(model.weighting, STRATEGIES["equal"])
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert set(hypermodel.objective.metrics) == {t.name for t in fa.TASKS if not t.auxiliary}
    assert RecipeHyperModel(fa.RECIPE).space == fa.SEARCH_SPACE


def test_deprecated_recipe_hypermodel_function_warns_and_builds_the_same():
    from kmtl.recipes import facial_attributes as fa

    with pytest.warns(DeprecationWarning, match=r"RecipeHyperModel\(facial_attributes.RECIPE"):
        make = fa.hypermodel
    assert make(quick=True).space == fa.SEARCH_SPACE


def test_recipe_without_search_space_tunes_learning_rate_and_weighting():
    import dataclasses

    from kmtl.recipes import facial_attributes as fa

    from kmtl.tuning.recipe_hypermodel import default_search_space

    hypermodel = RecipeHyperModel(dataclasses.replace(fa.RECIPE, search_space=None), quick=True)
    assert hypermodel.space == default_search_space(hypermodel.settings)
    rate = hypermodel.space["learning_rate"]
    lr = fa.DEFAULTS["learning_rate"]
    assert (rate["min"], rate["max"], rate["default"]) == pytest.approx((lr / 10, lr * 10, lr))
    assert hypermodel.space["weighting"][0] == fa.DEFAULTS["weighting"] and sorted(
        hypermodel.space["weighting"]) == sorted(STRATEGIES)


def make_generic_recipe(calls):
    """A recipe whose data settings, model settings and data-derived model settings can all be seen."""

    def load_data(batch_size, seed, num_examples=100, tasks=None):
        calls.append(("load_data", num_examples))
        import tensorflow as tf

        x = np.random.default_rng(seed).normal(size=(num_examples, 4)).astype("float32")
        y = {"a": (x[:, 0] > 0).astype("float32"), "b": x[:, 1:2]}
        splits = [tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size) for _ in range(3)]
        return kmtl.RecipeData(*splits, tasks=TASKS, model_settings={"offset": 3.0})

    def build_model(width=2, units=2, offset=0.0, tasks=None):
        calls.append(("build_model", width, units, offset))
        x = keras.Input((width,), name="x")
        return kmtl.builders.hard_sharing(x, keras.layers.Dense(units, name="trunk")(x), TASKS)

    def compile_model(model, weighting="equal", learning_rate=1e-3):
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), weighting=weighting, run_eagerly=True)
        return model

    return kmtl.Recipe(
        name="generic", description="Two tasks on random vectors.", tasks=TASKS, build_model=build_model,
        compile_model=compile_model, load_data=load_data,
        defaults={"epochs": 1, "batch_size": 16, "learning_rate": 1e-2, "weighting": "equal", "num_examples": 48,
                  "width": 4, "units": 99},
        quick={"num_examples": 32}, data_settings=("num_examples",), model_settings=("width", "units"),
        derived_settings=("offset",), search_space={"units": [4, 8], "weighting": ["uncertainty"]},
    )


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_tune_recipe_passes_declared_settings_and_data_derived_model_settings(tmp_path, monkeypatch):
    from kmtl.app.tune import tune_recipe

    calls, lines = [], []
    run = tune_recipe(make_generic_recipe(calls), max_trials=1, quick=True, directory=tmp_path, verbose=0,
                      log=lines.append)
    assert calls[0] == ("load_data", 32)  # DATA_SETTINGS, with QUICK applied
    builds = [c for c in calls if c[0] == "build_model"]
    # MODEL_SETTINGS (width=4), the searched `units` (never the setting 99) and load_data's model_settings (offset).
    assert len(builds) >= 2 and all(c[1] == 4 and c[2] in (4, 8) and c[3] == 3.0 for c in builds)
    assert run.best_values["weighting"] == "uncertainty" and run.best_values["units"] in (4, 8)
    assert ("build_model", 4, run.best_values["units"], 3.0) in builds
    assert run.project_dir == tmp_path / "generic"
    assert any(line.startswith("\nBest val_mtl_score:") for line in lines)


def test_tuner_kinds_and_exclusive_resume_overwrite(tmp_path):
    from kmtl.app.tune import tune_recipe
    from kmtl.tuning.run import make_tuner

    hypermodel = BuilderHyperModel("hard_sharing", inputs=4, tasks=TASKS, search_space=TINY_HARD)
    tuner = make_tuner(hypermodel, kind="bayesian", max_trials=3, directory=tmp_path, project_name="b")
    assert isinstance(tuner, keras_tuner.BayesianOptimization) and tuner.oracle.objective is hypermodel.objective
    with pytest.raises(ValueError, match="Received: kind='grid'"):
        make_tuner(hypermodel, kind="grid", max_trials=1, directory=tmp_path, project_name="g")
    with pytest.raises(ValueError, match="at most one of `resume` and `overwrite`"):
        tune_recipe("facial-attributes", max_trials=1, directory=tmp_path, resume=True, overwrite=True)


def test_recipe_hypermodel_rejects_names_no_function_takes():
    from kmtl.recipes import facial_attributes as fa

    with pytest.raises(ValueError, match=r"names \['momentum'\]"):
        RecipeHyperModel(fa.RECIPE, search_space={"momentum": [0.9]})
    with pytest.raises(ValueError, match=r"Expected a `kmtl.Recipe`. Received: recipe='facial-attributes'"):
        RecipeHyperModel("facial-attributes")  # core tuning takes the object; names are the app's


@pytest.fixture
def tiny_facial_recipe(monkeypatch):
    """The facial-attributes recipe with a tiny `--quick` run: 16x16 images, a two-stage 4-8 filter CNN, eager."""
    import dataclasses

    import kmtl.recipe
    from kmtl.recipes import facial_attributes as fa

    quick = {**fa.QUICK, "num_train": 32, "num_val": 16, "num_test": 16, "image_size": 16}
    space = {"filters": [(4, 8)], "fusion_units": 8, "head_units": [(4,)], "dropout": 0.0,
             "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "weighting": ["uncertainty", "equal"]}

    def compile_eagerly(model, weighting="uncertainty", learning_rate=2e-3):
        # Tracing the 8-task train and test functions costs far more than the two tiny steps run here.
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), weighting=weighting, run_eagerly=True)
        return model

    recipe = dataclasses.replace(fa.RECIPE, quick=quick, search_space=space, compile_model=compile_eagerly)
    monkeypatch.setitem(kmtl.recipe._LOADED, recipe.name, recipe)  # what `kmtl tune facial-attributes` gets
    return recipe


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_cli_tune_quick_prints_best_and_never_clobbers(tiny_facial_recipe, tmp_path, capsys):
    argv = ["tune", "facial-attributes", "--quick", "--max-trials", "1", "--directory", str(tmp_path),
            "--verbose", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Best val_mtl_score:" in out
    score = float(out.split("Best val_mtl_score:")[1].split()[0])
    assert score < 1.0 and math.isfinite(score)  # mean skill over the trivial predictors: below 0 when worse
    skills = [float(line.split("skill")[-1]) for line in out.splitlines() if "(trivial " in line]
    assert len(skills) == len([t for t in tiny_facial_recipe.tasks if not t.auxiliary])
    assert score == pytest.approx(sum(skills) / len(skills), abs=1e-3)  # printed with 3 decimals
    for name in ("filters", "learning_rate", "weighting"):
        assert name in out
    assert "(4, 8)" in out  # tuples print as the search space wrote them
    trial_json = tmp_path / "facial_attributes" / "trial_0" / "trial.json"
    assert trial_json.is_file()

    assert main(argv) == 2  # an earlier search is there
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0  # max-trials already reached: reports the same best trial
    assert f"Best val_mtl_score: {score:.4f}" in capsys.readouterr().out
    assert not (tmp_path / "facial_attributes" / "trial_1").exists()
    marker = tmp_path / "facial_attributes" / "left_by_the_first_search"
    marker.touch()
    assert main(argv + ["--overwrite"]) == 0  # deleted, then searched afresh
    assert not marker.exists() and trial_json.is_file()


@pytest.mark.slow  # the recipe's real `--quick` settings: a 3-stage CNN on 128 images, about 30-70 s on 2 cores
def test_cli_tune_with_the_recipes_own_quick_settings(tmp_path, capsys):
    argv = ["tune", "facial-attributes", "--quick", "--max-trials", "1", "--directory", str(tmp_path), "--verbose", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    score = float(out.split("Best val_mtl_score:")[1].split()[0])
    assert score < 1.0 and math.isfinite(score)
    assert out.count("(trivial ") == 8  # every task's metric beside its trivial predictor's, and its skill
    assert "(16, 32, 48)" in out or "(32, 64, 96)" in out  # the recipe's SEARCH_SPACE["filters"], as tuples


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["tune", "facial-attributes"], "the following arguments are required: --max-trials"),
        (["tune", "facial-attributes", "--max-trials", "0"], "expected a positive integer, got '0'"),
        (["tune", "facial-attributes", "--max-trials", "1", "--resume", "--overwrite"], "not allowed with"),
    ],
)
def test_cli_tune_bad_arguments(argv, fragment, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("kmtl: error:") and fragment in err and err.count("\n") == 1
