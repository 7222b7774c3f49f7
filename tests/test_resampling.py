"""`cross_validate` with scikit-learn's splitters."""

import keras
import numpy as np
import pytest
from sklearn.model_selection import KFold
from tiny import tiny_model

import kmtl
from kmtl.evaluation.resampling import (
    CrossValidationResult,
    cross_validate,
    make_splitter,
)


def _build():
    tasks = [kmtl.Task("a", "binary"), kmtl.Task("r", "regression")]
    return tiny_model(tasks=tasks, input_dim=3, trunk_units=4, activation="relu", head_units=(), seed=None,
                      compile=False)


def _compile(model):
    model.compile(keras.optimizers.Adam(0.01), run_eagerly=True)  # eager: tiny models train faster than tracing


def _data(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, {"a": (np.arange(n) % 2).astype("int32"), "r": x[:, :1] * 2.0}


def test_kfold_has_n_splits_disjoint_folds_and_mean_over_folds():
    x, y = _data(12)
    result = cross_validate(_build, _compile, x, y, splitter="kfold", n_splits=3, fit_kwargs={"verbose": 0},
                            verbose=0)
    assert len(result.reports) == len(result.folds) == 3
    tests = [set(test.tolist()) for _, test in result.folds]
    assert set().union(*tests) == set(range(12)) and sum(map(len, tests)) == 12
    for train, test in result.folds:
        assert not set(train) & set(test)
    maes = [report["r"]["mae"] for report in result.reports]
    assert result.mean()["r"]["mae"] == pytest.approx(np.mean(maes))
    assert result.std()["r"]["mae"] == pytest.approx(np.std(maes, ddof=1))
    assert result.mean()["overall"]["loss"] == pytest.approx(np.mean([r.overall["loss"] for r in result.reports]))
    table = result.table()
    assert table.startswith("3 folds") and "±" in table and "r " in table
    assert result.to_dict()["test_sizes"] == [4, 4, 4]


class Episodes:
    """A `kmtl.data.SequenceData`-like container: `len`, `subset(indices)` and `labels`."""

    def __init__(self, x, labels):
        self.x, self.labels = x, labels
        self.seen = []

    def __len__(self):
        return len(self.x)

    def subset(self, indices):
        self.seen.append(list(indices))
        return Episodes(self.x[indices], {k: v[indices] for k, v in self.labels.items()})


def test_group_kfold_keeps_groups_apart_on_episode_data():
    import tensorflow as tf

    episodes = Episodes(*_data(12))
    groups = np.repeat([10, 11, 12, 13], 3)

    def to_data(subset, training):
        return tf.data.Dataset.from_tensor_slices((subset.x, subset.labels)).batch(4)

    result = cross_validate(_build, _compile, episodes, splitter="group_kfold", n_splits=2, groups=groups,
                            to_data=to_data, verbose=0)
    assert episodes.seen == [idx.tolist() for fold in result.folds for idx in fold]
    for report, (_, test) in zip(result.reports, result.folds):
        assert report.confusion_matrix("a").matrix.sum() == len(test)  # scored on the held-out episodes
    assert len(result.folds) == 2
    seen = []
    for train, test in result.folds:
        assert not set(groups[train]) & set(groups[test])
        seen += sorted(set(groups[test]))
    assert sorted(seen) == [10, 11, 12, 13]  # every group held out exactly once


def test_leave_one_out_on_five_samples():
    x, y = _data(5)
    result = cross_validate(_build, _compile, x, y, splitter="loo", verbose=0)
    assert len(result.reports) == 5
    assert [test.tolist() for _, test in result.folds] == [[0], [1], [2], [3], [4]]
    accuracies = [report["a"]["accuracy"] for report in result.reports]
    assert set(accuracies) <= {0.0, 1.0}
    assert result.mean()["a"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert np.isnan(result.reports[0]["a"]["auroc"])  # undefined with a single example
    assert np.isnan(result.mean()["a"]["auroc"])


def test_splitter_names_and_objects():
    from sklearn.model_selection import GroupKFold, LeaveOneOut, ShuffleSplit

    assert isinstance(make_splitter("loo"), LeaveOneOut)
    holdout = make_splitter("holdout", test_size=0.25, seed=1)
    assert isinstance(holdout, ShuffleSplit) and holdout.get_n_splits() == 1
    train, test = next(holdout.split(np.zeros((8, 1))))
    assert len(test) == 2 and len(train) == 6
    assert make_splitter("kfold").get_n_splits() == 5
    assert isinstance(make_splitter("group_kfold", 3, groups=[0]), GroupKFold)
    custom = KFold(4)
    assert make_splitter(custom) is custom
    with pytest.raises(ValueError, match="Received: splitter='bootstrap'"):
        make_splitter("bootstrap")
    with pytest.raises(ValueError, match="needs `groups`"):
        make_splitter("group_kfold")
    with pytest.raises(ValueError, match="Received: n_splits=0"):
        make_splitter("kfold", 0)


def test_bad_arguments_are_refused_before_training():
    x, y = _data(6)
    with pytest.raises(ValueError, match="same number of examples"):
        cross_validate(_build, _compile, x[:5], y, verbose=0)
    with pytest.raises(ValueError, match="one entry per example"):
        cross_validate(_build, _compile, x, y, splitter="group_kfold", groups=[0, 1], verbose=0)
    with pytest.raises(ValueError, match="Received: 'b'"):
        cross_validate(_build, _compile, x, y, stratify="b", verbose=0)
    with pytest.raises(ValueError, match="pass `to_data="):
        cross_validate(_build, _compile, Episodes(x, y), verbose=0)


def test_result_of_hand_made_reports():
    reports = [
        kmtl.EvaluationReport({"a": {"accuracy": 0.5}}, {"loss": 1.0}),
        kmtl.EvaluationReport({"a": {"accuracy": 1.0}}, {"loss": 3.0}),
    ]
    result = CrossValidationResult(reports, [(np.arange(2), np.arange(2, 3))] * 2)
    assert result.mean() == {"a": {"accuracy": 0.75}, "overall": {"loss": 2.0}}
    assert result.std()["a"]["accuracy"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
    assert result.summary(2)["a"]["accuracy"] == "0.75 ± 0.35"
