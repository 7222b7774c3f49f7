import keras
import numpy as np
import pytest

from kmtl.data.clinical.icu import PHENOTYPES, generate_icu_stays, simulate_icu_events
from kmtl.data.clinical.mimic3 import LABEL_NAMES, los_bucket
from kmtl.data.sequences import SequenceData, to_dataset
from kmtl.data.clinical.discretizer import CATEGORIES, Discretizer


def _toy():
    """Three episodes of 3, 1 and 2 steps with every kind of label."""
    lengths = (3, 1, 2)
    return SequenceData(
        features=[np.full((n, 2), i + 1.0) for i, n in enumerate(lengths)],
        labels={
            "dead": np.array([1, 0, -1], dtype="int32"),
            "pheno": np.array([[1, 0], [0, 1], [1, 1]], dtype="int32"),
            "decomp": [np.arange(n, dtype="int32") for n in lengths],
            "hours": [np.arange(n, dtype="float32") + 0.5 for n in lengths],
            "pair": [np.ones((n, 2), dtype="float32") for n in lengths],
        },
        groups=np.array([7, 7, 9]),
        feature_names=["a", "b"],
        episode_ids=["x", "y", "z"],
    )


# === SequenceData and to_dataset ===


def test_to_dataset_pads_each_batch_with_missing_markers():
    batches = list(to_dataset(_toy(), batch_size=2))
    (inputs, labels), (inputs2, labels2) = batches
    assert inputs["features"].shape == (2, 3, 2) and inputs2["features"].shape == (1, 2, 2)
    np.testing.assert_array_equal(inputs["features"].numpy()[1], [[2, 2], [0, 0], [0, 0]])
    np.testing.assert_array_equal(inputs["mask"].numpy(), [[1, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(labels["decomp"].numpy(), [[0, 1, 2], [0, -1, -1]])
    np.testing.assert_array_equal(labels["hours"].numpy(), [[0.5, 1.5, 2.5], [0.5, np.nan, np.nan]])
    assert labels["pair"].shape == (2, 3, 2) and np.isnan(labels["pair"].numpy()[1, 1:]).all()
    np.testing.assert_array_equal(labels["pheno"].numpy(), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(labels2["dead"].numpy(), [-1])
    dtypes = {name: value.dtype.name for name, value in labels.items()}
    assert dtypes == {"dead": "int32", "pheno": "int32", "decomp": "int32", "hours": "float32", "pair": "float32"}
    assert inputs["features"].dtype.name == inputs["mask"].dtype.name == "float32"


def test_to_dataset_tasks_max_steps_and_shuffle():
    inputs, labels = next(iter(to_dataset(_toy(), 3, tasks=["hours", "dead"], max_steps=2)))
    assert list(labels) == ["hours", "dead"] and inputs["features"].shape == (3, 2, 2)
    np.testing.assert_array_equal(inputs["mask"].numpy().sum(axis=1), [2, 1, 2])
    shuffled = [x["features"].numpy()[:, 0, 0] for x, _ in to_dataset(_toy(), 1, shuffle=True, seed=3)]
    assert sorted(np.concatenate(shuffled).tolist()) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="Unknown label name.*'age'"):
        to_dataset(_toy(), 2, tasks=["age"])
    with pytest.raises(ValueError, match="batch_size=0"):
        to_dataset(_toy(), 0)


def test_subset_and_split():
    data = _toy()
    part = data.subset([2, 0])
    assert part.episode_ids == ["z", "x"] and part.groups.tolist() == [9, 7]
    np.testing.assert_array_equal(part.labels["pheno"], [[1, 1], [1, 0]])
    assert [len(y) for y in part.labels["decomp"]] == [2, 3]
    many = generate_icu_stays(60, seed=4)
    parts = many.split((0.6, 0.2, 0.2), seed=1)
    assert sum(len(p) for p in parts) == 60
    patients = [set(p.groups.tolist()) for p in parts]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert 30 <= len(parts[0]) <= 42  # about 60 % of the episodes, give or take a patient's few stays
    again = many.split((0.6, 0.2, 0.2), seed=1)
    assert [p.episode_ids for p in again] == [p.episode_ids for p in parts]
    assert [len(p) for p in many.split((0.5, 0.5), seed=0, by_group=False)] == [30, 30]


@pytest.mark.parametrize("fractions", [(0.5, 0.6), (1.0, 0.0), ()])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        _toy().split(fractions)


def test_sequence_data_checks_label_lengths():
    with pytest.raises(ValueError, match="Label 'decomp' of episode 1 has 2 steps; its features have 1"):
        SequenceData([np.zeros((3, 1)), np.zeros((1, 1))], {"decomp": [np.zeros(3), np.zeros(2)]}, [0, 1], ["a"])
    with pytest.raises(ValueError, match="Label 'dead' has 1 episodes"):
        SequenceData([np.zeros((3, 1)), np.zeros((1, 1))], {"dead": np.zeros(1)}, [0, 1], ["a"])


# === Synthetic ICU stays ===


def test_generator_is_deterministic():
    first, second = generate_icu_stays(12, seed=5), generate_icu_stays(12, seed=5)
    other = generate_icu_stays(12, seed=6)
    for a, b in zip(first.features, second.features):
        np.testing.assert_array_equal(a, b)
    for name in LABEL_NAMES:
        for a, b in zip(first.labels[name], second.labels[name]):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.groups, second.groups)
    assert [x.shape for x in first.features] != [x.shape for x in other.features]


def test_generator_layout_and_groups():
    data = generate_icu_stays(40, seed=2)
    assert data.num_features == 76 and data.feature_names == Discretizer().feature_names
    assert data.labels["phenotype"].shape == (40, 25) and set(np.unique(data.labels["phenotype"])) <= {0, 1}
    assert all(data.is_per_step(n) for n in ("decompensation", "length_of_stay", "remaining_stay"))
    assert data.labels["mortality"].shape == (40,)
    counts = np.unique(data.groups, return_counts=True)[1]
    assert counts.max() >= 2  # some patients have several stays
    for episode_id, patient in zip(data.episode_ids, data.groups):
        assert episode_id.startswith(f"{patient}_episode") and episode_id.endswith("_timeseries.csv")
    for x in data.features:
        for name in CATEGORIES:  # every categorical block is one-hot at every step
            np.testing.assert_array_equal(x[:, Discretizer().channel_groups[name][:-1]].sum(axis=1), 1.0)


def test_generator_labels_follow_the_benchmark_definitions():
    stays = simulate_icu_events(80, seed=3)
    data = generate_icu_stays(80, seed=3)
    assert 12.0 <= min(s["los"] for s in stays) and max(s["los"] for s in stays) <= 120.0
    for stay, x, decomp, bucket, remaining, mortality in zip(
        stays,
        data.features,
        data.labels["decompensation"],
        data.labels["length_of_stay"],
        data.labels["remaining_stay"],
        data.labels["mortality"],
    ):
        los = stay["los"]
        assert x.shape[0] == int(los + 1 - 1e-6)
        assert mortality == (-1 if los < 48 else stay["mortality"])
        hours = np.arange(x.shape[0]) + 1.0  # step k predicts at the end of its bin, hour k + 1
        labelled = ~np.isnan(remaining)
        assert not labelled[:4].any() and (decomp[:4] == -1).all()  # no prediction in the first 4 hours
        np.testing.assert_allclose(remaining[labelled], los - hours[labelled], atol=1e-4)
        np.testing.assert_array_equal(np.diff(np.flatnonzero(labelled)), 1)  # one run of labelled steps
        np.testing.assert_allclose(np.diff(remaining[labelled]), -1.0, atol=1e-4)  # one hour less per step
        np.testing.assert_array_equal(bucket, np.where(labelled, los_bucket(np.nan_to_num(remaining)), -1))
        death = np.inf if stay["death_hours"] is None else stay["death_hours"]
        known = decomp != -1
        np.testing.assert_array_equal(decomp[known], (death - hours[known] < 24.0).astype(int))
    assert sum(s["mortality"] for s in stays) > 0 and (np.concatenate(data.labels["decompensation"]) == 1).any()


def _auroc(labels, scores):
    """Mann-Whitney AUROC with ties counted half."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (pos.size * neg.size)


def _padded(data, steps):
    x = np.zeros((len(data), steps, data.num_features), dtype="float32")
    decomp = np.full((len(data), steps), -1, dtype="int32")
    for i, (features, labels) in enumerate(zip(data.features, data.labels["decompensation"])):
        x[i, : len(features)] = features[:steps]
        decomp[i, : len(features)] = labels[:steps]
    mortality = np.full((len(data), steps), -1, dtype="int32")
    mortality[:, 47] = data.labels["mortality"]  # the in-hospital mortality prediction is made at 48 h
    return x, {"decompensation": decomp, "mortality": mortality}


@pytest.mark.slow  # trains a small LSTM for a few epochs (about 20-40 s on 2 cores)
def test_small_lstm_learns_mortality_and_decompensation():
    from kmtl.data.clinical.normalizer import Normalizer

    keras.utils.set_random_seed(0)
    train, test = generate_icu_stays(700, seed=11).split((0.7, 0.3), seed=0)
    norm = Normalizer(train.continuous_channels).fit(train.features)
    x_train, y_train = _padded(train, 72)
    x_test, y_test = _padded(test, 72)
    inputs = keras.Input((72, 76))
    hidden = keras.layers.LSTM(16, return_sequences=True)(norm.layer()(inputs))
    outputs = {name: keras.layers.Dense(1, activation="sigmoid", name=name)(hidden) for name in y_train}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="binary_crossentropy")
    weights = {name: (y >= 0).astype("float32") for name, y in y_train.items()}
    targets = {name: np.maximum(y, 0).astype("float32")[..., None] for name, y in y_train.items()}
    model.fit(x_train, targets, sample_weight=weights, epochs=6, batch_size=32, verbose=0)
    predictions = model.predict(x_test, verbose=0)
    for name, minimum in (("mortality", 0.7), ("decompensation", 0.7)):  # chance is 0.5; measured 0.84, 0.79
        known = y_test[name] >= 0
        auroc = _auroc(y_test[name][known], predictions[name][..., 0][known])
        assert auroc > minimum, f"{name} AUROC {auroc:.3f}"


# === The generator's latent structure (what each task depends on; see kmtl.data.clinical.icu) ===


@pytest.fixture(scope="module")
def stays():
    return simulate_icu_events(240, seed=7)


def _mean_chart(stay, name):
    values = np.asarray(stay["timeseries"][name], dtype="float64")
    return np.nanmean(values)


def test_phenotypes_leave_their_signature_in_their_charts(stays):
    """Sets the generator's `_SIGNATURES` in numbers: stays with a phenotype differ in its charts by about its size."""
    has = np.array([s["phenotype"] for s in stays]).astype(bool)
    index = {name: i for i, name in enumerate(PHENOTYPES)}

    def gap(phenotype, chart):
        means = np.array([_mean_chart(s, chart) for s in stays])
        column = has[:, index[phenotype]]
        return means[column].mean() - means[~column].mean()

    # Measured -12.7, +17.3, +81.6 and -3.6 (the sizes plus what co-occurring phenotypes add); before the
    # signatures, phenotypes showed only through their factor: +7.6, +5.6, +24.6 and -1.8.
    assert gap("Conduction disorders", "Heart Rate") < -8.0  # signature -15 bpm
    assert gap("Essential hypertension", "Systolic blood pressure") > 10.0  # +15 mmHg
    assert gap("Diabetes mellitus with complications", "Glucose") > 45.0  # +60 mg/dl
    assert gap("Chronic obstructive pulmonary disease and bronchiectasis", "Oxygen saturation") < -2.5  # -2.5 %


def test_length_of_stay_and_death_follow_the_severity_course(stays):
    """The remaining stay is predictable from the severity course (discharge follows recovery, not a memoryless
    hazard), and deaths come at high severity."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import cohen_kappa_score

    rows, buckets = [], []
    for stay in stays:
        severity = stay["severity"]
        for hour in range(5, int(stay["los"]), 3):  # every third hour: enough rows, a third of the fitting time
            rows.append((severity[hour], severity[hour] - severity[hour - 5], hour / 24.0))
            buckets.append(los_bucket(stay["los"] - hour))
    rows, buckets = np.array(rows), np.array(buckets)
    half = len(rows) // 2
    fitted = LogisticRegression(max_iter=1000).fit(rows[:half], buckets[:half])
    kappa = cohen_kappa_score(buckets[half:], fitted.predict(rows[half:]), weights="linear")
    assert kappa > 0.2, kappa  # measured 0.33; 0.02 with the earlier constant-hazard discharge
    died = [s for s in stays if s["death_hours"] is not None and s["death_hours"] <= s["los"]]
    lived = [s for s in stays if s["death_hours"] is None]
    assert np.mean([s["severity"][-1] for s in died]) > np.mean([s["severity"][-1] for s in lived]) + 1.5
    assert 0.08 < len(died) / len(stays) < 0.3
