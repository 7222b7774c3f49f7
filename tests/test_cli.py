"""The `kmtl` command line, called as `main([...])`."""

import pytest

from kmtl.cli import main


def test_recipes_lists_facial_attributes(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "facial-attributes" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "no-such-recipe"], "invalid choice: 'no-such-recipe'"),
        (["train", "facial-attributes", "--epochs", "0"], "expected a positive integer, got '0'"),
        (["train", "facial-attributes", "--batch-size", "many"], "expected a positive integer, got 'many'"),
        (["train", "facial-attributes", "--weighting", "loudest"], "invalid choice: 'loudest'"),
        (["train", "facial-attributes", "--learning-rate", "-1"], "expected a positive number"),
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


def test_missing_real_data_folder_is_one_line_error(tmp_path, capsys):
    code = main(["train", "facial-attributes", "--quick", "--data", f"celeba:{tmp_path / 'absent'}", "--no-export"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("kmtl: error:") and err.count("\n") == 1 and "absent" in err


def test_quick_train_prints_every_task_and_exports_new_versions(tmp_path, capsys):
    from kmtl.recipes import facial_attributes as fa

    argv = ["train", "facial-attributes", "--quick", "--export-dir", str(tmp_path), "--verbose", "0"]
    assert main(argv + ["--epochs", "1"]) == 0
    out = capsys.readouterr().out
    for task in fa.TASKS:
        assert task.name in out
    assert "Exported for TF Serving" in out
    assert (tmp_path / "facial_attributes" / "1" / "saved_model.pb").is_file()
    assert main(argv + ["--weighting", "equal", "--no-export"]) == 0
    assert not (tmp_path / "facial_attributes" / "2").exists()
