"""The forecasting recipe: generator, macro data, windows, the rolling-origin split, naive forecasts, model, report,
export and CLI."""

import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from kmtl.app.cli import main
from kmtl.recipes import forecasting as fc
from kmtl.recipes.forecasting import _data


@pytest.fixture(scope="module")
def tiny():
    """Quick settings: 80 synthetic quarters, 8 test origins."""
    settings = fc.RECIPE.settings(quick=True)
    return settings, fc.RECIPE.load(settings, seed=0)


# === Data ===


def test_generator_is_deterministic_and_has_its_known_structure():
    a, b = fc.generate_series(60, seed=3), fc.generate_series(60, seed=3)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.values, fc.generate_series(60, seed=4).values)
    assert a.values.shape == (60, 8) and a.names[:2] == ["target_1", "target_2"] and list(a.primary) == a.names[:2]
    # On a long draw, least squares recovers the factor dynamics and each series' loadings and seasonal amplitude.
    data = fc.generate_series(8_000, seed=0)
    transition = np.linalg.lstsq(data.factors[:-1], data.factors[1:], rcond=None)[0].T
    np.testing.assert_allclose(transition, fc.FACTOR_TRANSITION, atol=0.03)  # ~3 standard errors
    season = np.array([1.0, 0.0, -1.0, 0.0])[np.arange(len(data.values)) % 4]
    design = np.column_stack([data.factors, season])
    coefficients = np.linalg.lstsq(design, data.values, rcond=None)[0].T
    np.testing.assert_allclose(coefficients[:, :2], fc.LOADINGS, atol=0.04)
    np.testing.assert_allclose(coefficients[:, 2], _data.SEASONAL_AMPLITUDE, atol=0.04)


def test_macrodata_is_made_stationary_from_its_levels():
    frame = pd.DataFrame({"year": [1959.0, 1959.0, 1959.0], "quarter": [1.0, 2.0, 3.0]})
    for name, (column, transform, *_) in fc.MACRO_SERIES.items():
        frame[column] = [100.0, 110.0, 99.0] if transform == "growth" else [5.0, 5.5, 5.25]
    data = fc.load_macrodata(frame)
    assert data.dates == ["1959Q2", "1959Q3"] and data.names == list(fc.MACRO_SERIES)
    gdp, unemployment = data.values[:, 0], data.values[:, 1]
    np.testing.assert_allclose(gdp, [100 * np.log(1.1), 100 * np.log(99 / 110)])
    np.testing.assert_allclose(unemployment, [0.5, -0.25])


def test_macrodata_from_statsmodels():
    pytest.importorskip("statsmodels")
    data = fc.load_macrodata()
    assert data.values.shape == (202, 9) and data.dates[0] == "1959Q2" and data.dates[-1] == "2009Q3"
    assert data.values[0, 0] == pytest.approx(100 * np.log(2778.801 / 2710.349))
    assert data.values[0, 1] == pytest.approx(5.1 - 5.8)


@pytest.mark.parametrize(
    "change, match",
    [({"drop": "realgdp"}, "missing column"), ({"realcons": -1.0}, "'realcons'"), ({"unemp": np.nan}, "'unemp'")],
)
def test_macrodata_frame_is_checked(change, match):
    frame = pd.DataFrame({"year": [1959.0, 1959.0], "quarter": [1.0, 2.0]})
    for column, *_ in fc.MACRO_SERIES.values():
        frame[column] = [1.0, 2.0]
    if "drop" in change:
        frame = frame.drop(columns=change["drop"])
    else:
        for column, value in change.items():
            frame.loc[1, column] = value
    with pytest.raises(ValueError, match=match):
        fc.load_macrodata(frame)


def test_windows_hold_the_history_and_the_next_four_quarters():
    values = np.arange(20.0).reshape(10, 2)  # quarter q holds (2q, 2q + 1)
    history, targets = fc.windows(values, window=4)
    assert history.shape == (3, 4, 2) and targets.shape == (3, 4, 2)  # origins 3, 4, 5
    np.testing.assert_array_equal(history[1, :, 0], [2, 4, 6, 8])  # quarters 1-4
    np.testing.assert_array_equal(targets[1, :, 1], [11, 13, 15, 17])  # quarters 5-8


@pytest.mark.parametrize("fold", [None, (0, 4), (3, 4)])
def test_split_leaves_nothing_observed_after_the_first_test_origin(fold):
    train, val, test = fc.split_origins(100, 40, fold)
    horizon = fc.HORIZON
    assert train[-1] + horizon == val[0] and val[-1] + horizon == test[0]  # targets end where the next part starts
    assert len(val) == _data.VAL_ORIGINS and np.all(np.diff(np.concatenate([train, val, test])) >= 1)
    assert (len(test), test[-1]) == ((40, 99) if fold is None else (10, 60 + 10 * fold[0] + 9))


@pytest.mark.parametrize("fold", [(4, 4), (0, 0), (1,), "0/4", (0.0, 2)])
def test_split_refuses_a_bad_fold(fold):
    with pytest.raises(ValueError, match="fold"):
        fc.split_origins(100, 40, fold)


def test_load_data_fits_the_scaling_on_the_training_quarters(tiny):
    settings, data = tiny
    history, targets = data.arrays["train"]
    last = data.origins["train"][-1]  # the last training origin's quarter
    observed = data.series.values[: last + 1]
    np.testing.assert_allclose(data.model_settings["series_mean"], observed.mean(axis=0))
    np.testing.assert_allclose(data.model_settings["series_std"], observed.std(axis=0))
    np.testing.assert_array_equal(history[-1], data.series.values[last - settings["window"] + 1 : last + 1])
    inputs, labels = next(iter(data.test))
    assert tuple(inputs["history"].shape) == (8, 4, 8) and sorted(labels) == sorted(t.name for t in data.tasks)
    np.testing.assert_allclose(labels["target_2"].numpy(), data.arrays["test"][1][:, :, 1], rtol=1e-6)
    # Two passes of the training origins per epoch (quick settings), batches of 32.
    assert sum(len(batch[1]["target_1"]) for batch in data.train) == 2 * len(history)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source": "fred"}, "source"),
        ({"window": 3}, "window"),
        ({"tasks": ["gdp_growth"]}, "tasks"),
        ({"passes_per_epoch": 0}, "passes_per_epoch"),
        ({"test_origins": 500}, "test_origins"),
        ({"test_origins": 270}, "Too few training origins"),
        ({"num_quarters": 20}, "num_quarters"),
    ],
)
def test_bad_data_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fc.load_data(**kwargs)


def test_naive_forecasts():
    history = np.arange(6.0).reshape(1, 6, 1)  # quarters 0-5 hold 0-5
    np.testing.assert_array_equal(fc.last_value(history)[0, :, 0], [5, 5, 5, 5])
    np.testing.assert_array_equal(fc.seasonal_naive(history)[0, :, 0], [2, 3, 4, 5])  # y[t + h - 4]
    with pytest.raises(ValueError, match="window of at least 4"):
        fc.seasonal_naive(history[:, :3])


def test_recipe_defaults_are_the_functions_defaults():
    for function, names in ((fc.build_model, fc.RECIPE.model_settings), (fc.load_data, fc.RECIPE.data_settings)):
        parameters = inspect.signature(function).parameters
        for name in names:
            assert parameters[name].default == fc.DEFAULTS.get(name), name
    assert inspect.signature(fc.load_data).parameters["batch_size"].default == fc.DEFAULTS["batch_size"]


# === Model ===


def test_model_weights_supplementary_series_lower_and_normalises_the_history():
    macro = {t.name: t for t in fc.source_tasks("macrodata")}
    tasks = [macro[name] for name in ("gdp_growth", "unemployment_change", "investment_growth")]
    mean, std = np.linspace(-1.0, 1.0, 9), np.linspace(0.5, 2.0, 9)
    model = fc.build_model(4, mean, std, tasks=tasks, units=(4,), supplementary_weight=0.25)
    weight = {t.name: (t.loss_weight, t.auxiliary) for t in model.tasks}
    # The squared error in standardised units, the supplementary series' times 0.25.
    assert weight == {"gdp_growth": (1.0, False), "unemployment_change": (pytest.approx(1 / 0.4**2), False),
                      "investment_growth": (pytest.approx(0.25 / 5.0**2), True)}
    # The default split: 3 of each layer's 4 units shared (shared_fraction 0.75).
    assert sorted(model.output) == sorted(weight) and model.get_layer("split_shared_1").units == 3
    # The normalisation reads the given statistics: the history (mean + std) is an input of ones.
    layer = model.get_layer("history_normalized")
    ones = layer(np.broadcast_to(mean + std, (1, 4, 9)).astype("float32")).numpy()
    np.testing.assert_allclose(ones, 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"supplementary_weight": -1.0}, "supplementary_weight"), ({"series_mean": [0.0], "series_std": [0.0]}, "series"),
     ({"tasks": []}, "tasks"), ({"shared_fraction": 2.0}, "shared_fraction")],
)
def test_build_model_checks_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fc.build_model(**kwargs)


def test_cli_names_a_bad_source_before_training(capsys):
    assert main(["train", "forecasting", "--data", "fred", "--no-export", "--verbose", "0"]) == 2
    assert "Expected one of ('synthetic', 'macrodata'). Received: source='fred'" in capsys.readouterr().err


# === Report, export (slow) ===


@pytest.mark.slow  # ~6 s: 2 refits x 3 tiny models of one short epoch
def test_rolling_report_refits_at_each_origin_beside_the_naive_forecasts():
    settings = fc.RECIPE.settings(quick=True, test_origins=8, passes_per_epoch=1)
    text = fc.report(settings, seed=0, refits=2)
    # The naive forecasts' errors, computed here from the two folds' arrays.
    history, targets = zip(*(fc.RECIPE.load({**settings, "fold": (k, 2)}).arrays["test"] for k in range(2)))
    history, targets = np.concatenate(history), np.concatenate(targets)
    assert len(targets) == 8
    lines = text.splitlines()
    assert "refit 1: 47 training origins, tested origins t=68 .. t=71" in text
    assert "refit 2: 51 training origins, tested origins t=72 .. t=75" in text
    for name, column in (("target_1", 0), ("target_2", 1)):
        table = lines[lines.index(f"{name}: mean absolute error per quarter ahead") + 2:][:5]
        rows = {line[:22].strip(): [float(v.rstrip("%")) for v in line[22:].split()] for line in table}
        assert list(rows) == ["multi-task (split)", "single-task", "last value", "seasonal naive", "training mean"]
        for label, forecast in (("last value", fc.last_value(history)), ("seasonal naive", fc.seasonal_naive(history))):
            error = np.abs(forecast[:, :, column] - targets[:, :, column])
            np.testing.assert_allclose(rows[label][:5], [*error.mean(axis=0), error.mean()], atol=6e-4)
        assert rows["last value"][-1] == 0.0 and all(np.isfinite(v).all() for v in rows.values())


def table_rows(text, name):
    """The rows of a report's table of target `name`: label -> its numbers (h=1..4, MAE, RMSE, vs last %)."""
    lines = text.splitlines()
    rows = {}
    for line in lines[lines.index(f"{name}: mean absolute error per quarter ahead") + 2:]:
        if not line.strip():
            break
        rows[line[:22].strip()] = [float(v.rstrip("%")) for v in line[22:].split()]
    return rows


@pytest.mark.slow  # a quick fit, the report kmtl train prints, the export loaded in a process without kmtl
def test_train_report_and_export_serve_the_trained_models_forecasts(tiny, tmp_path):
    import keras

    import kmtl

    settings, data = tiny
    keras.utils.set_random_seed(0)
    model = fc.RECIPE.compile(fc.RECIPE.build(settings, data), settings)
    model.fit(data.train, epochs=1, verbose=0, shuffle=False)

    # The recipe's report (what `kmtl train` prints): the model's errors on the test origins beside the naive ones.
    assert fc.RECIPE.report is fc.trained_report
    text = fc.trained_report(model, data, settings)
    history, targets = data.arrays["test"]
    predicted = model.predict({"history": history.astype("float32")}, verbose=0)
    for column, name in enumerate(("target_1", "target_2")):
        rows = table_rows(text, name)
        assert list(rows) == ["multi-task (split)", "last value", "seasonal naive", "training mean"]
        truth = targets[:, :, column]
        last = np.mean(np.abs(fc.last_value(history)[:, :, column] - truth))
        for label, forecast in (("multi-task (split)", predicted[name]), ("last value", history[:, -1:, column]),
                                ("training mean", data.arrays["train"][1][:, :, column].mean(axis=0))):
            error = forecast - truth
            mae = np.mean(np.abs(error))
            expected = [*np.abs(error).mean(axis=0), mae, np.sqrt(np.mean(error ** 2))]
            np.testing.assert_allclose(rows[label][:-1], expected, atol=6e-4)  # printed to 3 decimals
            assert rows[label][-1] == pytest.approx((mae / last - 1) * 100, abs=0.051), label  # and 1 decimal
    path = kmtl.export.for_serving(model, tmp_path / "forecasting", warmup=False)
    history = np.random.default_rng(0).normal(size=(3, 4, 8)).astype("float32")
    np.save(tmp_path / "history.npy", history)
    expected = model.predict({"history": history}, verbose=0)
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import tensorflow as tf
        serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
        out = serve(history=tf.constant(np.load(sys.argv[2])))
        assert "kmtl" not in sys.modules
        np.savez(sys.argv[3], **{name: value.numpy() for name, value in out.items()})
        """
    )
    served = tmp_path / "served.npz"
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "history.npy"), str(served)],
                   check=True, timeout=300)
    got = np.load(served)
    assert sorted(got.files) == ["target_1", "target_2"]  # the supplementary series are not exported
    for name in ("target_1", "target_2"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
