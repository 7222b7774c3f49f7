"""`--set KEY=VALUE` on train, compare and tune: any declared data or model setting, typed, checked before data."""

import pytest

import kmtl.app.compare
import kmtl.app.train
import kmtl.app.tune
from kmtl.app.cli import main
from kmtl.app.overrides import parse_overrides, setting_types
from kmtl.app.registry import resolve


@pytest.fixture
def captured(monkeypatch):
    """The keyword arguments train/compare/tune were called with (nothing trains)."""
    seen = {}

    def fake(name):
        def run(recipe, **kwargs):
            seen.update(recipe=recipe, command=name, **kwargs)
            if name == "compare":
                return type("Result", (), {"table": lambda self: ""})()

        return run

    monkeypatch.setattr(kmtl.app.train, "train_recipe", fake("train"))
    monkeypatch.setattr(kmtl.app.compare, "compare_recipe", fake("compare"))
    monkeypatch.setattr(kmtl.app.tune, "tune_recipe", fake("tune"))
    return seen


@pytest.mark.parametrize("command", ["train", "compare", "tune"])
def test_set_reaches_the_run_parsed_to_the_declared_types(command, captured):
    extra = ["--max-trials", "1"] if command == "tune" else []
    argv = [command, "facial-attributes", "--set", "num_train=1000", "--set", "dropout=0.2",
            "--set", "filters=8,16,24", "--set", "head_units=(16,)", *extra]
    assert main(argv) == 0
    assert captured["command"] == command
    assert (captured["num_train"], captured["dropout"], captured["filters"], captured["head_units"]) == (
        1000, 0.2, (8, 16, 24), (16,))
    assert type(captured["num_train"]) is int and type(captured["dropout"]) is float


def test_types_come_from_the_recipes_declared_values():
    types = setting_types(resolve("clinical-timeseries"))
    assert types["num_stays"] == 1200 and types["max_steps"] == 60  # the quick settings declare max_steps
    assert types["fold"] is None  # declared with no value: a literal
    recipe = resolve("clinical-timeseries")
    assert parse_overrides(recipe, ["fold=(1, 5)", "los=linear", "max_steps=48", "deep_supervision=1"]) == {
        "fold": (1, 5), "los": "linear", "max_steps": 48, "deep_supervision": 1.0}
    assert parse_overrides(resolve("nlp-tagging"), ["crf=true", "char_features=No"]) == {
        "crf": True, "char_features": False}
    recipe = resolve("domain-adversarial")
    assert set(recipe.compile_settings) <= set(setting_types(recipe))  # compile settings are declared settings too


@pytest.mark.parametrize(
    "pair, fragments",
    [
        ("num_trian=5", ["unknown key 'num_trian'"]),
        ("num_train=1.5", ["num_train expects an integer", "Received: num_train='1.5'"]),
        ("dropout=lots", ["dropout expects a number"]),
        ("filters=8,,16", ["filters expects a comma-separated tuple of int (like 16,32,48)"]),
        ("num_train", ["expected KEY=VALUE, got 'num_train'"]),
    ],
)
def test_a_bad_set_is_one_line_naming_recipe_key_valid_keys_and_type(pair, fragments, capsys, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("data loaded")

    monkeypatch.setattr(kmtl.app.train, "train_recipe", no_data)  # refused before the run starts
    assert main(["train", "facial-attributes", "--set", pair]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmtl: error: Invalid --set for recipe 'facial-attributes'") and err.count("\n") == 1
    for fragment in fragments + ["Valid keys: batch_renorm (bool), dropout (number), filters (tuple of int)",
                                 "num_train (int)"]:
        assert fragment in err, err


def test_a_setting_given_twice_is_refused(captured, capsys):
    assert main(["train", "nlp-tagging", "--crf", "--set", "crf=false"]) == 2
    assert "crf given both by --set and by its own option" in capsys.readouterr().err
