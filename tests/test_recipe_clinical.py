"""The clinical time-series recipe: channel groups, grouped LSTM, read-out, both models, data, metrics and CLI."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from kmtl.recipes import clinical_timeseries as ct
from kmtl.recipes.clinical_timeseries._data import replicated_labels
from kmtl.recipes.clinical_timeseries._metrics import LOS_BUCKET_MEAN_HOURS
from layer_testing import fit_and_round_trip
from sklearn import metrics as skm

import kmtl
import kmtl.export
from kmtl.layers import SequenceReadout
from kmtl.layers.channel_groups import ChannelGroups, GroupedLSTM

TINY = {"channel_units": 2, "shared_units": 4, "units": 4, "dropout": 0.1}


# === ChannelGroups and GroupedLSTM ===


def test_channel_groups_gathers_channels_and_round_trips(tmp_path):
    x = keras.Input((None, 5))
    groups = ChannelGroups([[4, 0], [1, 2, 3]], name="groups")(x)
    model = keras.Model(x, keras.layers.Concatenate()([keras.layers.Dense(2)(g) for g in groups]))
    data = np.random.default_rng(0).normal(size=(3, 4, 5)).astype("float32")
    parts = [keras.ops.convert_to_numpy(p) for p in ChannelGroups([[4, 0], [1, 2, 3]])(data)]
    np.testing.assert_array_equal(parts[0], data[..., [4, 0]])
    np.testing.assert_array_equal(parts[1], data[..., 1:4])
    fit_and_round_trip(model, data, np.zeros((3, 4, 4), "float32"), tmp_path)


@pytest.mark.parametrize("groups", [[], [[]], [[0, -1]], [[0], [1.5]], "ab", [[True]]])
def test_channel_groups_rejects_bad_groups(groups):
    with pytest.raises(ValueError, match="Invalid value for `groups`"):
        ChannelGroups(groups)


def test_channel_groups_rejects_an_index_past_the_channels():
    with pytest.raises(ValueError, match="Channel index 5 is out of range"):
        ChannelGroups([[0], [5]])(keras.Input((None, 5)))


@pytest.mark.parametrize("go_backwards", [False, True])
def test_grouped_lstm_equals_one_keras_lstm_per_group(go_backwards):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 5)).astype("float32")
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], "float32")
    parts = ChannelGroups([[0, 3], [1], [2, 4]])(x)
    grouped = GroupedLSTM(3, go_backwards=go_backwards)
    actual = keras.ops.convert_to_numpy(grouped(parts, mask=mask))
    for g, part in enumerate(parts):
        lstm = keras.layers.LSTM(3, return_sequences=True, go_backwards=go_backwards)
        lstm.build(part.shape)
        lstm.set_weights([grouped.kernels[g].numpy(), grouped.recurrent_kernel.numpy()[g], grouped.bias.numpy()[g]])
        expected = keras.ops.convert_to_numpy(lstm(part, mask=mask > 0))
        expected = expected[:, ::-1] if go_backwards else expected  # Keras returns a backward LSTM's outputs reversed
        np.testing.assert_allclose(actual[..., 3 * g : 3 * g + 3][mask > 0], expected[mask > 0], atol=1e-6)


def test_grouped_lstm_round_trips(tmp_path):
    x = keras.Input((None, 3))
    out = GroupedLSTM(2, name="grouped")(ChannelGroups([[0], [1, 2]])(x))
    model = keras.Model(x, out)
    data = np.random.default_rng(2).normal(size=(4, 5, 3)).astype("float32")
    fit_and_round_trip(model, data, np.zeros((4, 5, 4), "float32"), tmp_path, watched=model.get_layer("grouped").weights)
    with pytest.raises(ValueError, match="Received: units=0"):
        GroupedLSTM(0)


# === SequenceReadout ===


def test_readout_reads_a_step_or_the_last_real_step_and_round_trips(tmp_path):
    x = np.arange(10, dtype="float32").reshape(1, 5, 2).repeat(3, axis=0)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], "float32")
    at_3 = keras.ops.convert_to_numpy(SequenceReadout(3)([x, mask]))
    last = keras.ops.convert_to_numpy(SequenceReadout()([x, mask]))
    # Step 3, or the last real step when the sequence is shorter; step 0 when there is no real step.
    np.testing.assert_array_equal(at_3, [[6, 7], [2, 3], [0, 1]])
    np.testing.assert_array_equal(last, [[8, 9], [2, 3], [0, 1]])
    seq, m = keras.Input((None, 2)), keras.Input((None,))
    model = keras.Model([seq, m], keras.layers.Dense(1)(SequenceReadout(3, name="readout")([seq, m])))
    fit_and_round_trip(model, [x, mask], np.zeros((3, 1), "float32"), tmp_path)
    with pytest.raises(ValueError, match="Received: step=-1"):
        SequenceReadout(-1)


def test_sequence_mean_averages_real_steps_only_and_is_registered():
    from kmtl.layers import SequenceMean

    x = np.arange(10, dtype="float32").reshape(1, 5, 2).repeat(3, axis=0)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], "float32")
    # Steps 0..4 hold (0, 1), (2, 3), ..., (8, 9): the mean of all five, of the first two, and zeros for none.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(SequenceMean()([x, mask])), [[4, 5], [1, 2], [0, 0]])
    # Registered and configurable; a whole model holding it saves and loads in test_save_load_and_export_equal_predict.
    config = keras.saving.serialize_keras_object(SequenceMean(name="mean"))
    assert config["registered_name"] == "kmtl>SequenceMean"
    assert keras.saving.deserialize_keras_object(config).name == "mean"


def test_stay_readout_feeds_the_phenotype_head_the_last_step_and_the_mean():
    last = ct.build_model("lstm", stay_readout="last", **TINY)
    both = ct.build_model("lstm", stay_readout="last_and_mean", **TINY)
    assert both.get_layer("phenotype_summary").output.shape == (None, 2 * TINY["units"])
    assert "phenotype_summary" not in [layer.name for layer in last.layers]
    assert both.get_layer("mortality").__class__ is SequenceReadout  # mortality is still read at hour 48


def test_default_stay_readout_adds_each_input_channels_mean_and_mean_square_over_real_steps():
    model = ct.build_model("lstm", num_features=3, **TINY)  # the default, "last_mean_and_inputs"; identity scaling
    summary = keras.Model(model.inputs, model.get_layer("phenotype_summary").output)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32")
    pooled = keras.ops.convert_to_numpy(summary({"features": x, "mask": mask}))[:, 2 * TINY["units"]:]
    for i, steps in enumerate((3, 5)):
        real = x[i, :steps]
        np.testing.assert_allclose(pooled[i], np.concatenate([real.mean(0), (real**2).mean(0)]), rtol=1e-5, atol=1e-6)
    assert model.get_layer("mortality").__class__ is SequenceReadout  # mortality still reads hour 48 only


# === Data ===


@pytest.fixture(scope="module")
def splits():
    return ct.load_data(num_stays=16, batch_size=8, max_steps=60, seed=0, deep_supervision=0.5)


def test_data_batches_fit_the_tasks_and_the_normaliser_is_fitted_on_train(splits):
    inputs, labels = next(iter(splits.train))
    steps = inputs["mask"].shape[1]
    assert inputs["features"].shape[2] == 76 and steps <= 60
    assert labels["decompensation"].shape == (inputs["mask"].shape[0], steps)
    assert labels["phenotype_per_step"].shape == (inputs["mask"].shape[0], steps, 25)
    assert [t.name for t in splits.tasks] == ["mortality", "decompensation", "length_of_stay", "phenotype"]
    train_steps = np.concatenate(splits.sequences[0].features)
    channel = splits.sequences[0].continuous_channels[0]
    np.testing.assert_allclose(splits.normalizer.mean[channel], train_steps[:, channel].mean(), rtol=1e-5)
    assert splits.normalizer.std[59] == 1.0  # a mask channel is left as it is


def test_replicated_labels_mark_every_real_step_up_to_the_read_out():
    mortality = ct.make_tasks()[0]
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], "float32")
    out = replicated_labels(mortality, np.array([1, 0, -1], "int32"), mask, step=2).numpy()
    np.testing.assert_array_equal(out, [[1, 1, 1, -1], [0, 0, -1, -1], [-1, -1, -1, -1]])
    phenotype = ct.make_tasks()[3]
    out = replicated_labels(phenotype, np.array([[1, 0], [0, 1]], "int32"), mask[:2]).numpy()
    np.testing.assert_array_equal(out[1], [[0, 1], [0, 1], [-1, -1], [-1, -1]])


def test_tasks_carry_the_benchmark_loss_weights_and_deep_supervision_splits_them():
    weights = {t.name: t.loss_weight for t in ct.make_tasks()}
    assert weights == {"mortality": 0.2, "decompensation": 1.0, "length_of_stay": 1.5, "phenotype": 1.0}
    assert [t.name for t in ct.make_tasks(los="hours")][2] == "remaining_stay"
    assert [t.name for t in ct.make_tasks("pbcseq")] == ["death", "transplant", "stage", "next_bilirubin"]
    model = ct.build_model("lstm", deep_supervision=0.25, **TINY)
    tasks = {t.name: t for t in model.tasks}
    assert tasks["mortality"].loss_weight == pytest.approx(0.15)
    assert tasks["mortality_per_step"].loss_weight == pytest.approx(0.05)
    assert tasks["phenotype_per_step"].auxiliary and tasks["phenotype_per_step"].per_step


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"model": "gru"}, "Received: model='gru'"),
        ({"channel_units": 0}, "Received: channel_units=0"),
        ({"dropout": 1.0}, "Received: dropout=1.0"),
        ({"bidirectional": True}, "Invalid value for `bidirectional`"),
        ({"stay_readout": "mean"}, "Received: stay_readout='mean'"),
    ],
)
def test_build_model_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct.build_model(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"source": "mimic3"}, "Received: source='mimic3'"), ({"los": "days"}, "Received: los='days'"),
     ({"tasks": ["age"]}, "Received: tasks=\\['age'\\]"), ({"batch_size": 0}, "Received: batch_size=0"),
     ({"deep_supervision": 1.0}, "Received: deep_supervision=1.0")],
)
def test_load_data_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct.load_data(**kwargs)


# === Models: training, padding, read-out at 48 h, save/load, export ===


@pytest.fixture(scope="module", params=[("channelwise", 0.5), ("lstm", 0.0)], ids=["channelwise", "lstm"])
def trained(request, splits):
    keras.utils.set_random_seed(0)
    kind, deep_supervision = request.param
    settings = dict(splits.model_settings)
    if not deep_supervision:  # the splits carry the deep-supervision copies' labels: train without them
        splits = ct.load_data(num_stays=16, batch_size=8, max_steps=60, seed=0)
    model = ct.build_model(kind, deep_supervision=deep_supervision, **settings, **TINY)
    ct.compile_model(model, learning_rate=1e-2)
    history = model.fit(splits.train, epochs=1, verbose=0, shuffle=False)
    return model, history


def _batch(splits):
    inputs, _ = next(iter(splits.test))
    return {k: v.numpy() for k, v in inputs.items()}


def test_both_models_train_one_epoch(trained):
    model, history = trained
    for task in model.tasks:
        assert np.isfinite(history.history[f"{task.name}_loss"][0])
    assert model.get_layer("normalize").mean.shape[-1] == 76


def test_padding_leaves_predictions_on_real_steps_unchanged(trained, splits):
    model, _ = trained
    batch = _batch(splits)
    rng = np.random.default_rng(3)
    extra = 7  # padded steps holding junk features: the mask alone must keep them out
    padded = {
        "features": np.concatenate([batch["features"], rng.normal(size=batch["features"].shape[:1] + (extra, 76))], 1),
        "mask": np.concatenate([batch["mask"], np.zeros(batch["mask"].shape[:1] + (extra,))], 1),
    }
    before, after = model.predict(batch, verbose=0), model.predict({k: v.astype("float32") for k, v in padded.items()}, verbose=0)
    real = batch["mask"] > 0
    for task in model.tasks:
        steps = before[task.name].shape[1] if task.per_step else None
        got = after[task.name][:, :steps][real] if task.per_step else after[task.name]
        want = before[task.name][real] if task.per_step else before[task.name]
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=task.name)


def test_mortality_is_read_at_48_hours_from_the_past_only(trained):
    model, _ = trained
    rng = np.random.default_rng(4)
    features = rng.normal(size=(2, 60, 76)).astype("float32")
    mask = np.ones((2, 60), "float32")
    mask[1, 30:] = 0  # a 30-hour stay: read at its last real step
    out = model.predict({"features": features, "mask": mask}, verbose=0)
    if "mortality_per_step" in out:  # with deep supervision: the whole-stay output is the per-step head's, read
        np.testing.assert_allclose(out["mortality"][0], out["mortality_per_step"][0, 47], atol=1e-6)
        np.testing.assert_allclose(out["mortality"][1], out["mortality_per_step"][1, 29], atol=1e-6)
    later = features.copy()
    later[:, 48:] = rng.normal(size=later[:, 48:].shape)
    changed = model.predict({"features": later, "mask": mask}, verbose=0)
    np.testing.assert_allclose(changed["mortality"], out["mortality"], atol=1e-6)  # hours after 48 are not read
    np.testing.assert_allclose(changed["decompensation"][:, :48], out["decompensation"][:, :48], atol=1e-6)


def test_save_load_and_export_equal_predict(trained, splits, tmp_path):
    model, _ = trained
    batch = _batch(splits)
    path = tmp_path / "clinical.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    expected = model.predict(batch, verbose=0)
    restored = loaded.predict(batch, verbose=0)
    for name in expected:
        np.testing.assert_allclose(restored[name], expected[name], atol=1e-5, err_msg=name)
    export = kmtl.export.for_serving(loaded, tmp_path / "serving", examples=batch)
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    served = {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in batch.items()}).items()}
    main_tasks = sorted(t.name for t in model.tasks if not t.auxiliary)  # deep-supervision copies are auxiliary
    assert main_tasks == ["decompensation", "length_of_stay", "mortality", "phenotype"]
    assert not any(name.endswith("_per_step") for name in served)  # and so never exported
    np.testing.assert_allclose(served["mortality"], expected["mortality"][:, 0], atol=1e-5)
    np.testing.assert_allclose(served["decompensation"], expected["decompensation"][..., 0], atol=1e-5)
    np.testing.assert_allclose(served["length_of_stay"], expected["length_of_stay"], atol=1e-5)
    np.testing.assert_array_equal(served["length_of_stay_class_id"], expected["length_of_stay"].argmax(-1))
    np.testing.assert_allclose(served["phenotype"], expected["phenotype"], atol=1e-5)


def test_bidirectional_phenotype_model_ignores_padding():
    phenotype = [t for t in ct.make_tasks() if t.name == "phenotype"]
    model = ct.build_model("channelwise", tasks=phenotype, bidirectional=True, **TINY)
    rng = np.random.default_rng(5)
    features = rng.normal(size=(2, 9, 76)).astype("float32")
    mask = np.ones((2, 9), "float32")
    short = model.predict({"features": features[:, :6], "mask": mask[:, :6]}, verbose=0)["phenotype"]
    mask[:, 6:] = 0
    padded = model.predict({"features": features, "mask": mask}, verbose=0)["phenotype"]
    np.testing.assert_allclose(padded, short, atol=1e-5)


# === Benchmark metrics ===


class _Replay:
    """A stand-in model: returns the predictions that ride along in each batch's inputs."""

    tasks = tuple(ct.make_tasks())

    def predict_on_batch(self, inputs):
        return {t.name: inputs[f"pred_{t.name}"] for t in self.tasks}


def test_benchmark_metrics_equal_sklearn_on_real_labelled_entries():
    rng = np.random.default_rng(6)
    # Four stays; the last has no real step. Labels on padded steps (mask 0) must be ignored, as must -1 and NaN.
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], "float32")
    decomp = np.array([[0, 1, -1, 1], [0, 1, 1, 1], [1, -1, 0, 0], [1, 1, 1, 1]], "int32")
    buckets = np.array([[0, 3, 9, 2], [1, -1, 4, 4], [5, 5, 0, 0], [2, 2, 2, 2]], "int32")
    hours = np.array([[5, 80, 400, 60], [30, 40, 110, 110], [130, np.nan, 3, 3], [50, 50, 50, 50]], "float32")
    mortality = np.array([1, 0, -1, 1], "int32")
    base = rng.integers(0, 2, size=25)
    phenotype = np.stack([base, 1 - base, rng.integers(0, 2, size=25), -np.ones(25)]).astype("int32")
    predictions = {
        "mortality": rng.uniform(size=(4, 1)).astype("float32"),
        "decompensation": rng.uniform(size=(4, 4, 1)).astype("float32"),
        "length_of_stay": rng.dirichlet(np.ones(10), size=(4, 4)).astype("float32"),
        "phenotype": rng.uniform(size=(4, 25)).astype("float32"),
    }
    inputs = {"features": np.zeros((4, 4, 76), "float32"), "mask": mask}
    inputs.update({f"pred_{k}": v for k, v in predictions.items()})
    labels = {"mortality": mortality, "decompensation": decomp, "length_of_stay": buckets, "remaining_stay": hours,
              "phenotype": phenotype}
    scores = ct.benchmark_metrics(_Replay(), [(inputs, labels)])

    real = ([0, 0, 0, 1, 1, 2, 2], [0, 1, 3, 0, 1, 0, 2])  # real steps with a label, listed by hand
    y, p = decomp[real], predictions["decompensation"][real][:, 0]
    precision, recall, _ = skm.precision_recall_curve(y, p)
    assert scores["decompensation"]["auroc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert scores["decompensation"]["auprc"] == pytest.approx(skm.auc(recall, precision))
    assert scores["decompensation"]["n"] == 7
    assert scores["mortality"]["auroc"] == pytest.approx(skm.roc_auc_score([1, 0], predictions["mortality"][:2, 0]))
    los = ([0, 0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 0, 0, 2])  # (1, 1) has no bucket, (2, 1) no hours
    predicted = predictions["length_of_stay"][los].argmax(-1)
    kappa = skm.cohen_kappa_score(buckets[los], predicted, weights="linear")
    assert scores["length_of_stay"]["kappa"] == pytest.approx(kappa)
    mad = np.abs(hours[los] - np.asarray(LOS_BUCKET_MEAN_HOURS)[predicted]).mean()
    assert scores["length_of_stay"]["mad"] == pytest.approx(mad, rel=1e-6)
    y, p = phenotype[:3], predictions["phenotype"][:3]
    assert scores["phenotype"]["auroc_macro"] == pytest.approx(skm.roc_auc_score(y, p, average="macro"))
    assert scores["phenotype"]["auroc_micro"] == pytest.approx(skm.roc_auc_score(y, p, average="micro"))


# === CLI ===


@pytest.mark.slow  # trains the quick LSTM (16 stays, one epoch): about 10 s on 2 cores
def test_cli_quick_run_trains_reports_and_exports_to_its_own_folder(tmp_path, capsys):
    from kmtl.app.cli import main

    argv = ["train", "clinical-timeseries", "--quick", "--model", "lstm", "--export-dir", str(tmp_path), "--verbose", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for task in ct.TASKS:
        assert task.name in out
    assert (tmp_path / "clinical_timeseries_quick" / "1" / "saved_model.pb").is_file()
    assert not (tmp_path / "clinical_timeseries").exists()  # where the real models are served from


def test_cli_missing_mimic3_folder_is_one_line_error(tmp_path, capsys):
    from kmtl.app.cli import main

    assert main(["train", "clinical-timeseries", "--quick", "--data", f"mimic3:{tmp_path / 'absent'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmtl: error:") and err.count("\n") == 1 and "absent" in err


def test_declared_defaults_are_build_models_defaults():
    # One source of truth: what `kmtl train` runs with is what `ct.build_model()` builds.
    import inspect

    parameters = inspect.signature(ct.build_model).parameters
    for name in ct.RECIPE.model_settings:
        if name in ct.RECIPE.defaults:
            assert parameters[name].default == ct.RECIPE.defaults[name], name
    assert (ct.RECIPE.defaults["channel_units"], ct.RECIPE.defaults["shared_units"]) == (8, 64)
    assert ct.SEARCH_SPACE["weighting"][0] == ct.RECIPE.defaults["weighting"]  # a search starts from the default


# === Learning (slow) ===


@pytest.mark.slow  # about 35 s on 2 loaded CPU cores: three epochs on 240 synthetic stays
def test_channelwise_model_learns_the_synthetic_tasks():
    keras.utils.set_random_seed(0)
    data = ct.load_data(num_stays=240, batch_size=16, seed=1)
    model = ct.build_model("channelwise", channel_units=4, shared_units=32, dropout=0.1, **data.model_settings)
    ct.compile_model(model, learning_rate=3e-3).fit(data.train, epochs=3, verbose=0, shuffle=False)
    scores = ct.benchmark_metrics(model, data.test)
    # An untrained model scores about 0.5; the tasks' signal is in the vitals (see kmtl.data.icu).
    assert scores["decompensation"]["auroc"] > 0.75
    assert scores["length_of_stay"]["kappa"] > 0.1  # 0.22 here; a model predicting one bucket scores 0
    assert scores["phenotype"]["auroc_micro"] > 0.55


def _episodes_of_patients(patients):
    from kmtl.data.sequences import SequenceData

    features = [np.full((2 + i % 3, 1), i, "float32") for i in range(len(patients))]
    return SequenceData(features=features, labels={"y": np.arange(len(patients), dtype="int32")},
                        groups=np.asarray(patients), feature_names=["x"])


def test_fold_split_tests_every_episode_once_and_keeps_patients_together():
    patients = [f"p{i // 3}" for i in range(30)] + [f"q{i}" for i in range(12)]  # 10 patients of 3, 12 of 1
    data = _episodes_of_patients(patients)
    tested = []
    for k in range(4):
        train, val, test = data.fold_split((k, 4), val_fraction=0.2, seed=3)
        parts = [set(part.groups) for part in (train, val, test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(train) + len(val) + len(test) == len(data)
        assert 9 <= len(test) <= 12  # 42 episodes dealt to 4 folds by size: no fold far from 10.5
        tested.extend(test.labels["y"].tolist())
    assert sorted(tested) == list(range(len(data)))
    again = data.fold_split((1, 4), val_fraction=0.2, seed=3)[2].labels["y"]
    np.testing.assert_array_equal(again, data.fold_split((1, 4), val_fraction=0.2, seed=3)[2].labels["y"])
    assert set(data.fold_split((1, 4), 0.2, seed=4)[2].labels["y"]) != set(again)


@pytest.mark.parametrize("fold", [(4, 4), (0, 1), (-1, 3), (1.0, 3), "0/3", (True, 3)])
def test_fold_split_refuses_a_bad_fold(fold):
    with pytest.raises(ValueError, match="`fold`"):
        _episodes_of_patients(["a", "b", "c"]).fold_split(fold, val_fraction=0.2)


def test_fold_split_needs_a_patient_per_fold():
    with pytest.raises(ValueError, match="at least 5 patients"):
        _episodes_of_patients(["a", "a", "b", "c"]).fold_split((0, 5), val_fraction=0.2)


def test_clinical_folds_partition_the_stays_by_patient():
    seen = []
    for k in range(3):
        splits = ct.load_data(num_stays=30, max_steps=8, fold=(k, 3), seed=1)
        train, val, test = splits.sequences
        assert not set(test.groups) & (set(train.groups) | set(val.groups))
        seen.extend(test.groups.tolist())
    whole = ct.load_data(num_stays=30, max_steps=8, seed=1).sequences
    assert sorted(seen) == sorted(g for part in whole for g in part.groups.tolist())
    with pytest.raises(ValueError, match="benchmark's train/val/test lists"):
        ct.load_data("mimic3:/nonexistent", fold=(0, 3))
