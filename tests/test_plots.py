"""`EvaluationReport.save_plots`: PNG files, never overwriting a user's file."""

import sys

import numpy as np
import pytest

from kmtl.evaluation import EvaluationReport
from kmtl.evaluation.scores import ConfusionMatrix

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report():
    confusion = {
        "hair": ConfusionMatrix(np.array([[3, 1, 0], [0, 2, 2], [1, 0, 4]]), ["black", "blond", "brown"]),
        "tags": ConfusionMatrix(np.array([[[2, 1], [0, 3]], [[4, 0], [1, 1]]]), ["0", "1"], ["sun", "rain"]),
    }
    metrics = {"hair": {"loss": 1.0, "accuracy": 0.6}, "tags": {"loss": 0.5}, "age_group": {"loss": 2.0}}
    return EvaluationReport(metrics, {"loss": 3.5}, confusion=confusion)


HISTORY = {
    "loss": [3.0, 2.0, 1.5],
    "hair_loss": [1.2, 1.1, 1.0],
    "hair_accuracy": [0.3, 0.5, 0.6],
    "val_hair_accuracy": [0.25, 0.4, 0.5],
    "hair_weight": [1.0, 0.9, 0.8],
    "tags_weight": [1.0, 1.1, 1.2],
    "age_group_loss": [2.5, 2.2, 2.0],
    "val_age_group_loss": [2.6, 2.4, 2.3],
}


def test_plots_are_non_empty_pngs_named_after_tasks(tmp_path):
    written = _report().save_plots(tmp_path / "plots", HISTORY)
    names = sorted(p.name for p in written)
    assert names == [
        "confusion_hair.png",
        "confusion_tags.png",
        "learning_curves_age_group.png",
        "learning_curves_hair.png",
        "task_weights.png",
    ]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, path


def test_without_history_only_confusion_heatmaps(tmp_path):
    written = _report().save_plots(tmp_path)
    assert sorted(p.name for p in written) == ["confusion_hair.png", "confusion_tags.png"]


def test_refuses_to_overwrite_and_writes_nothing(tmp_path):
    mine = tmp_path / "confusion_tags.png"
    mine.write_bytes(b"my own figure")
    with pytest.raises(FileExistsError, match="confusion_tags.png"):
        _report().save_plots(tmp_path, HISTORY)
    assert mine.read_bytes() == b"my own figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_tags.png"]
    _report().save_plots(tmp_path, overwrite=True)
    assert mine.read_bytes().startswith(PNG_SIGNATURE)


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "kmtl\[plots\]"'):
        _report().save_plots(tmp_path)


def test_bad_history_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="Received: history=list"):
        _report().save_plots(tmp_path, [1, 2])


def test_a_failed_overwrite_leaves_the_previous_plots_whole(tmp_path, monkeypatch):
    """With overwrite=True the old file was truncated first, so a failure mid-write destroyed it."""
    from matplotlib.figure import Figure

    first = _report().save_plots(tmp_path, None)
    before = {p: p.read_bytes() for p in first}

    def fail_half_way(self, target, **kwargs):
        (target.write if hasattr(target, "write") else open(target, "wb").write)(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        _report().save_plots(tmp_path, None, overwrite=True)
    assert {p: p.read_bytes() for p in first} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in first)


def test_a_failed_write_leaves_no_half_written_plot(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def fail_half_way(self, target, **kwargs):
        (target.write if hasattr(target, "write") else open(target, "wb").write)(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        _report().save_plots(tmp_path / "plots", None)
    assert list((tmp_path / "plots").iterdir()) == []
