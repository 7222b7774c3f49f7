import keras
import numpy as np
import pytest

import kmtl.data

from kmtl.data.clinical.discretizer import CATEGORIES, VARIABLES, Discretizer
from kmtl.data.clinical.normalizer import Normalizer

HEADER = ["Hours", *VARIABLES]
EYE = "Glascow coma scale eye opening"


def _rows(*events):
    """CSV-like rows (strings, '' where not charted) from `(hours, {variable: value})` pairs."""
    rows = []
    for hours, cells in events:
        row = [repr(float(hours))] + [""] * len(VARIABLES)
        for name, value in cells.items():
            row[HEADER.index(name)] = str(value)
        rows.append(row)
    return rows


def _one_hot_index(x, name):
    """Position of the hot spelling of a categorical variable at every step (-1 if none)."""
    columns = Discretizer().channel_groups[name][:-1]
    block = x[:, columns]
    return np.where(block.sum(axis=1) > 0, block.argmax(axis=1), -1)


# === Discretizer layout ===


def test_layout_has_59_value_and_17_mask_channels():
    d = Discretizer()
    names = d.feature_names
    assert d.num_features == len(names) == 76
    assert sum(not n.startswith("mask->") for n in names) == 59
    assert names[:2] == ["Capillary refill rate->0.0", "Capillary refill rate->1.0"]
    assert names[59:] == [f"mask->{v}" for v in VARIABLES]
    # Every channel belongs to exactly one variable; a group ends with its own mask channel.
    groups = d.channel_groups
    assert sorted(i for g in groups.values() for i in g) == list(range(76))
    for name, indices in groups.items():
        assert names[indices[-1]] == f"mask->{name}"
        assert len(indices) - 1 == len(CATEGORIES.get(name, (None,)))
    assert [names[i] for i in d.continuous_channels] == [v for v in VARIABLES if v not in CATEGORIES]


# === Discretizer values ===


def test_last_value_in_bin_carry_forward_and_masks():
    rows = _rows(
        (0.0, {"Heart Rate": 80}),
        (0.5, {"Heart Rate": 85, "Capillary refill rate": "1.0"}),
        (1.0, {"Heart Rate": 90}),  # bins are (i, i + 1]: hour 1.0 still falls in bin 0
        (1.2, {EYE: "To Pain"}),
        (3.7, {"Heart Rate": 100}),
    )
    x = Discretizer().transform(rows, end_hours=5.0, header=HEADER)
    assert x.shape == (5, 76) and x.dtype == np.float32
    hr_value, hr_mask = Discretizer().channel_groups["Heart Rate"]
    np.testing.assert_array_equal(x[:, hr_value], [90, 90, 90, 100, 100])
    np.testing.assert_array_equal(x[:, hr_mask], [1, 0, 0, 1, 0])
    # Eye opening: the normal value ("4 Spontaneously") until charted, then the charted spelling carried on.
    spellings = CATEGORIES[EYE]
    expected = [spellings.index("4 Spontaneously")] + [spellings.index("To Pain")] * 4
    np.testing.assert_array_equal(_one_hot_index(x, EYE), expected)
    np.testing.assert_array_equal(x[:, Discretizer().channel_groups[EYE][-1]], [0, 1, 0, 0, 0])


def test_never_charted_variables_take_the_benchmark_normal_values():
    x = Discretizer().transform({"Hours": [0.2], "Heart Rate": [70]}, end_hours=2.0)
    groups = Discretizer().channel_groups
    expected = {"Temperature": 36.6, "Glucose": 128.0, "pH": 7.4, "Fraction inspired oxygen": 0.21, "Weight": 81.0}
    for name, value in expected.items():
        np.testing.assert_allclose(x[:, groups[name][0]], value, rtol=1e-6)
        np.testing.assert_array_equal(x[:, groups[name][-1]], 0.0)
    spelling = {"Glascow coma scale total": "15", "Glascow coma scale motor response": "6 Obeys Commands"}
    for name, normal in spelling.items():
        np.testing.assert_array_equal(_one_hot_index(x, name), CATEGORIES[name].index(normal))


def test_every_categorical_group_is_one_hot_at_every_step():
    rows = _rows((0.5, {"Glascow coma scale verbal response": "1.0 ET/Trach"}), (2.5, {"Glascow coma scale total": 7}))
    x = Discretizer().transform(rows, header=HEADER)
    for name in CATEGORIES:
        np.testing.assert_array_equal(x[:, Discretizer().channel_groups[name][:-1]].sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "name, value, spelling",
    [
        ("Capillary refill rate", 1, "1.0"),
        ("Capillary refill rate", "0", "0.0"),
        ("Glascow coma scale total", 15.0, "15"),
        ("Glascow coma scale total", "9.0", "9"),
        ("Glascow coma scale motor response", " Obeys Commands ", "Obeys Commands"),
    ],
)
def test_numeric_and_padded_spellings_match_the_benchmark_spelling(name, value, spelling):
    x = Discretizer().transform({"Hours": [0.0], name: [value]}, end_hours=0.5)
    assert _one_hot_index(x, name).tolist() == [CATEGORIES[name].index(spelling)]


def test_bin_count_and_end_follow_the_benchmark():
    d = Discretizer()
    assert d.transform({"Hours": [1.0]}, end_hours=48.0).shape[0] == 48
    assert d.transform({"Hours": [1.0]}, end_hours=48.5).shape[0] == 49
    assert d.transform({"Hours": [0.0, 3.7]}).shape[0] == 4  # ends at the last row: int(3.7 + 1 - 1e-6)
    x = d.transform({"Hours": [0.5, 6.0], "Heart Rate": [70, 200]}, end_hours=2.0)  # the row after the end is dropped
    np.testing.assert_array_equal(x[:, d.channel_groups["Heart Rate"][0]], [70, 70])
    wide = Discretizer(timestep=2.0).transform({"Hours": [2.0, 2.1], "pH": [7.1, 7.2]}, end_hours=4.0)
    np.testing.assert_allclose(wide[:, d.channel_groups["pH"][0]], [7.1, 7.2], rtol=1e-6)


def test_input_forms_agree_and_rows_are_sorted_by_time():
    events = [(2.5, {"Heart Rate": 95, EYE: "3 To speech"}), (0.5, {"Heart Rate": 80, "Temperature": 37.2})]
    reference = Discretizer().transform(_rows(*events), end_hours=4.0, header=HEADER)
    dict_rows = [{"Hours": h, **cells} for h, cells in events]
    columns = {
        "Hours": [2.5, 0.5],
        "Heart Rate": [95.0, 80.0],
        "Temperature": [np.nan, 37.2],
        EYE: ["3 To speech", None],
    }
    for data in (dict_rows, columns):
        np.testing.assert_array_equal(Discretizer().transform(data, end_hours=4.0), reference)
    pandas = pytest.importorskip("pandas")
    np.testing.assert_array_equal(Discretizer().transform(pandas.DataFrame(columns), end_hours=4.0), reference)


@pytest.mark.parametrize("impute", ["normal_value", "zero"])
def test_other_imputations(impute):
    x = Discretizer(impute=impute).transform({"Hours": [0.5], "Heart Rate": [120], EYE: ["To Pain"]}, end_hours=3)
    hr = Discretizer().channel_groups["Heart Rate"][0]
    filler = 86.0 if impute == "normal_value" else 0.0
    np.testing.assert_array_equal(x[:, hr], [120, filler, filler])
    hot = _one_hot_index(x, EYE)
    normal = CATEGORIES[EYE].index("4 Spontaneously")
    assert hot.tolist() == [CATEGORIES[EYE].index("To Pain")] + ([normal] * 2 if impute == "normal_value" else [-1, -1])


@pytest.mark.parametrize(
    "data, match",
    [
        ({"Hours": [0.0], EYE: ["Wide awake"]}, "Glascow coma scale eye opening.*Wide awake"),
        ({"Hours": [0.0], "Heart Rate": ["fast"]}, "Heart Rate.*fast"),
        ({"Hours": [0.0], "Lactate": [2.0]}, "Unknown column.*Lactate"),
        ({"Heart Rate": [80]}, "no 'Hours' column"),
        ({"Hours": [0.0, None], "Heart Rate": [80, 81]}, "Missing 'Hours' value in row 1"),
    ],
)
def test_bad_data_errors_name_the_variable(data, match):
    with pytest.raises(ValueError, match=match):
        Discretizer().transform(data, end_hours=2.0)


@pytest.mark.parametrize("kwargs, match", [({"timestep": 0}, "timestep=0"), ({"impute": "mean"}, "impute='mean'")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Discretizer(**kwargs)


def test_discretizer_config_round_trip():
    d = Discretizer(timestep=0.5, impute="zero")
    clone = Discretizer.from_config(d.get_config())
    assert clone.get_config() == {"timestep": 0.5, "impute": "zero"}


# === Normalizer ===


def _sequences():
    rng = np.random.default_rng(0)
    return [rng.normal(3.0, 2.0, size=(n, 4)).astype("float32") for n in (5, 2, 7)]


def test_fit_statistics_on_selected_channels_only():
    seqs = _sequences()
    norm = Normalizer(channels=[0, 2]).fit(seqs)
    steps = np.concatenate(seqs).astype("float64")
    np.testing.assert_allclose(norm.mean, [steps[:, 0].mean(), 0, steps[:, 2].mean(), 0], rtol=1e-6)
    np.testing.assert_allclose(norm.std, [steps[:, 0].std(), 1, steps[:, 2].std(), 1], rtol=1e-6)
    out = norm.transform(seqs[0])
    np.testing.assert_allclose(out[:, 0], (seqs[0][:, 0] - steps[:, 0].mean()) / steps[:, 0].std(), rtol=1e-5)
    np.testing.assert_array_equal(out[:, [1, 3]], seqs[0][:, [1, 3]])  # untouched channels stay bit-identical


def test_padded_steps_never_count():
    seqs = _sequences()
    padded = np.full((3, 7, 4), 1e6, dtype="float32")  # absurd padding: it would dominate any statistic
    mask = np.zeros((3, 7), dtype="float32")
    for i, seq in enumerate(seqs):
        padded[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
    from_list = Normalizer().fit(seqs)
    from_padded = Normalizer().fit(padded, mask=mask)
    np.testing.assert_allclose(from_padded.mean, from_list.mean, rtol=1e-6)
    np.testing.assert_allclose(from_padded.std, from_list.std, rtol=1e-6)


def test_discretizer_masks_and_one_hot_channels_pass_through():
    d = Discretizer()
    episodes = [
        d.transform({"Hours": [0.5, 2.5], "Heart Rate": [80, 120], EYE: ["To Pain", "Spontaneously"]}, end_hours=4),
        d.transform({"Hours": [1.5], "Heart Rate": [95], "Glucose": [210]}, end_hours=3),
    ]
    norm = Normalizer(channels=d.continuous_channels).fit(episodes)
    out = norm.transform(episodes[0])
    untouched = sorted(set(range(76)) - set(d.continuous_channels))
    np.testing.assert_array_equal(out[:, untouched], episodes[0][:, untouched])
    hr = d.channel_groups["Heart Rate"][0]
    # As the model sees them: carried forward, and the normal value (86) before the second episode's first chart.
    values = np.array([80, 80, 120, 120, 86, 95, 95], dtype="float64")
    np.testing.assert_allclose(out[:, hr], (episodes[0][:, hr] - values.mean()) / values.std(), rtol=1e-5)
    temperature = d.channel_groups["Temperature"][0]  # constant (normal value) on the training data
    assert norm.std[temperature] == 1.0 and norm.mean[temperature] == pytest.approx(36.6)


def test_layer_equals_transform_and_survives_save(tmp_path):
    seqs = _sequences()
    norm = Normalizer(channels=[1, 3]).fit(seqs)
    layer = norm.layer(name="norm")
    assert isinstance(layer, keras.layers.Normalization) and layer.name == "norm"
    batch = np.stack([s[:2] for s in seqs])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(batch)), norm.transform(batch), atol=1e-5)
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, norm.layer()(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), norm.transform(batch), atol=1e-5)


def test_normalizer_config_and_json_round_trip(tmp_path):
    norm = Normalizer(channels=[2, 0]).fit(_sequences())
    clone = Normalizer.from_config(norm.get_config())
    norm.save(tmp_path / "norm.json")
    loaded = Normalizer.load(tmp_path / "norm.json")
    for other in (clone, loaded):
        assert other.channels == [0, 2]
        np.testing.assert_allclose(other.transform(_sequences()[1]), norm.transform(_sequences()[1]), atol=1e-5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Normalizer().transform(np.zeros((2, 3))), "not fitted"),
        (lambda: Normalizer(channels=[5]).fit(_sequences()), "channels=\\[5\\]"),
        (lambda: Normalizer(channels=[-1]), "channels=\\[-1\\]"),
        (lambda: Normalizer().fit([np.array([[np.nan, 1.0]])]), "Channel 0 holds non-finite"),
        (lambda: Normalizer().fit(np.zeros((2, 3, 4)), mask=np.ones((2, 4))), "mask.shape=\\(2, 4\\)"),
        (lambda: Normalizer().fit(_sequences()).transform(np.zeros((2, 3))), "Expected 4 channels"),
    ],
)
def test_normalizer_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# === Where the clinical preprocessing lives ===


def test_old_names_are_deprecated_aliases_of_kmtl_data_clinical():
    """`kmtl.preprocessing` is a thin alias for one release; its names are `kmtl.data.clinical`'s and warn on use."""
    import importlib

    import kmtl.data.clinical as clinical
    import kmtl.preprocessing as old

    for name in old.__all__:
        with pytest.warns(DeprecationWarning, match=f"kmtl.data.clinical.{name}"):
            assert getattr(old, name) is getattr(clinical, name)
    assert importlib.import_module("kmtl.preprocessing.discretizer").Discretizer is clinical.Discretizer
    assert importlib.import_module("kmtl.data.mimic3").load_mimic3 is clinical.load_mimic3
    with pytest.warns(DeprecationWarning, match="kmtl.data.clinical.icu"):
        assert kmtl.data.icu.generate_icu_stays is clinical.generate_icu_stays


def test_every_public_data_name_is_reexported():
    import kmtl.data.clinical as clinical
    import kmtl.data.faces as faces

    for name in kmtl.data.__all__:
        assert hasattr(kmtl.data, name), name
    for name in clinical.__all__ + faces.__all__:
        assert hasattr(clinical if name in clinical.__all__ else faces, name)
