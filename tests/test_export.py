"""Tests for kmtl.export.for_serving: version folders, the serving signature, equality with Keras, side files.

The three checks that start TensorFlow in another process (loading the export without kmtl, and
`saved_model_cli show` / `run`) are launched together in the background by the `exports` fixture, so they
overlap each other and the in-process tests; each test then waits for the process it reads.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

import kmtl
import kmtl.export

HAIR = ["black", "blond", "brown"]
SUBPROCESS_TIMEOUT_S = 240

# Expected serving outputs of the single-input model: name -> (dtype, shape after the batch axis).
SINGLE_OUTPUTS = {
    "smiling": (tf.float32, ()),
    "hair": (tf.float32, (3,)),
    "hair_class_id": (tf.int64, ()),
    "hair_class_name": (tf.string, ()),
    "mood": (tf.float32, (3,)),
    "mood_class_id": (tf.int64, ()),
    "tags": (tf.float32, (4,)),
    "age": (tf.float32, ()),
    "pose": (tf.float32, (3,)),
}
TWO_INPUT_OUTPUTS = {"smiling": (tf.float32, ()), "age": (tf.float32, ())}

# Runs in a fresh interpreter: loads each export with TensorFlow alone, runs its signature on saved inputs and
# saves the outputs (strings decoded, so the .npz loads without pickle).
LOADER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    for export_dir, inputs_path, outputs_path in zip(*[iter(sys.argv[1:])] * 3):
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
        with np.load(inputs_path) as data:
            inputs = {name: tf.constant(data[name]) for name in data.files}
        outputs = {}
        for name, value in serve(**inputs).items():
            value = value.numpy()
            if value.dtype == object:
                value = np.array([v.decode("utf-8") for v in value.ravel()]).reshape(value.shape)
            outputs[name] = value
        np.savez(outputs_path, **outputs)
    assert "kmtl" not in sys.modules, sorted(m for m in sys.modules if m.startswith("kmtl"))
    print("LOADED WITHOUT KMTL")
    """
)


# === Models ===


def single_input_model():
    """Single input `feat` (5,), BatchNormalization and Dropout in the trunk, every task kind, one auxiliary task."""
    tasks = [
        kmtl.Task("smiling", "binary"),
        kmtl.Task("hair", "multiclass", num_classes=3, label_names=HAIR),
        kmtl.Task("mood", "multiclass", num_classes=3),
        kmtl.Task("tags", "multilabel", num_labels=4),
        kmtl.Task("age", "regression"),
        kmtl.Task("pose", "regression", units=3),
        kmtl.Task("domain", "binary", auxiliary=True),
    ]
    inputs = keras.Input((5,), name="feat")
    x = keras.layers.Dense(8, name="trunk")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5, name="trunk_bn")(x)  # low momentum: moving stats move in 1 step
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(0.5, name="trunk_dropout")(x)
    model = kmtl.builders.hard_sharing(inputs, x, tasks, name="faces")
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(16, 5)).astype("float32")
    y_train = {
        "smiling": rng.integers(0, 2, 16),
        "hair": rng.integers(0, 3, 16),
        "mood": rng.integers(0, 3, 16),
        "tags": rng.integers(0, 2, (16, 4)),
        "age": rng.normal(size=16).astype("float32"),
        "pose": rng.normal(size=(16, 3)).astype("float32"),
        "domain": rng.integers(0, 2, 16),
    }
    model.fit(x_train, y_train, batch_size=16, epochs=1, verbose=0)  # one step
    return model


def two_input_model():
    """Dict inputs `image` (4,) and `meta` (3,); a binary and a regression task."""
    tasks = [kmtl.Task("smiling", "binary"), kmtl.Task("age", "regression")]
    image = keras.Input((4,), name="image")
    meta = keras.Input((3,), name="meta")
    x = keras.layers.Concatenate()([image, meta])
    x = keras.layers.Dense(6, activation="relu", name="trunk")(x)
    return kmtl.builders.hard_sharing({"image": image, "meta": meta}, x, tasks, name="two_inputs")


# === Fixtures ===


def _saved_model_cli():
    candidate = Path(sys.executable).with_name("saved_model_cli")
    found = str(candidate) if candidate.exists() else shutil.which("saved_model_cli")
    assert found, "saved_model_cli not found next to sys.executable nor on PATH"
    return found


class Background:
    """A subprocess whose stdout/stderr go to files (no pipe to fill up); `result()` waits for it once."""

    def __init__(self, args, folder, name):
        self.stdout_path, self.stderr_path = folder / f"{name}.out", folder / f"{name}.err"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(args, stdout=out, stderr=err, cwd=folder)

    def result(self):
        returncode = self.process.wait(timeout=SUBPROCESS_TIMEOUT_S)
        return returncode, self.stdout_path.read_text(), self.stderr_path.read_text()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def models():
    return {"single": single_input_model(), "two": two_input_model()}


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    """Exports both models once, then starts the out-of-process checks in the background."""
    root = tmp_path_factory.mktemp("exports")
    rng = np.random.default_rng(1)
    two_examples = {"image": rng.normal(size=(3, 4)), "meta": rng.normal(size=(3, 3))}
    paths = {
        "single": kmtl.export.for_serving(models["single"], root / "faces"),
        "two": kmtl.export.for_serving(models["two"], root / "two_inputs", examples=two_examples),
    }
    inputs = {
        "single": {"feat": rng.normal(size=(6, 5)).astype("float32")},
        "two": {"image": rng.normal(size=(6, 4)).astype("float32"), "meta": rng.normal(size=(6, 3)).astype("float32")},
    }
    loader_args = []
    for key in paths:
        np.savez(root / f"{key}_inputs.npz", **inputs[key])
        loader_args += [str(paths[key]), str(root / f"{key}_inputs.npz"), str(root / f"{key}_outputs.npz")]
    np.save(root / "ones.npy", np.ones((2, 5), "float32"))
    cli = _saved_model_cli()
    single_dir = str(paths["single"])
    background = {
        "loader": Background([sys.executable, "-c", LOADER, *loader_args], root, "loader"),
        "show": Background([cli, "show", "--all", "--dir", single_dir], root, "show"),
        "run": Background(
            [cli, "run", "--dir", single_dir, "--tag_set", "serve", "--signature_def", "serving_default",
             "--inputs", f"feat={root / 'ones.npy'}"],
            root,
            "run",
        ),
    }
    yield {"root": root, "paths": paths, "inputs": inputs, "two_examples": two_examples, "background": background}
    for process in background.values():
        process.stop()


def _snapshot(folder):
    """Every file under `folder`, relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _signature(path):
    return tf.saved_model.load(str(path)).signatures["serving_default"]


def _read_warmup(path):
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests"))]
    assert len(records) == 1
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    assert log.WhichOneof("log_type") == "predict_log"
    return log.predict_log.request


def _read_rest(path):
    return json.loads((path / "assets.extra" / "rest_request.json").read_text())


# === Version folders ===


def test_versions_count_up_and_explicit_version(models, tmp_path):
    base = tmp_path / "two_inputs"
    model = models["two"]
    assert kmtl.export.for_serving(model, base) == base / "1"
    assert kmtl.export.for_serving(model, base) == base / "2"
    assert kmtl.export.for_serving(model, str(base), version=7) == base / "7"
    assert kmtl.export.for_serving(model, base) == base / "8"  # one more than the highest version
    assert sorted(os.listdir(base)) == ["1", "2", "7", "8"]  # no staging folder left behind
    for version in ("1", "2", "7", "8"):
        assert (base / version / "saved_model.pb").is_file()


def test_existing_version_raises_and_is_left_unchanged(models, tmp_path):
    base = tmp_path / "two_inputs"
    first = kmtl.export.for_serving(models["two"], base, version=3)
    before = _snapshot(first)
    with pytest.raises(FileExistsError, match="3"):
        kmtl.export.for_serving(models["two"], base, version=3)
    assert _snapshot(first) == before
    assert os.listdir(base) == ["3"]


@pytest.mark.parametrize("version", [0, -1, "2", True])
def test_invalid_version_raises(models, tmp_path, version):
    with pytest.raises(ValueError, match="version"):
        kmtl.export.for_serving(models["two"], tmp_path / "two_inputs", version=version)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_version_or_staging_folder(models, tmp_path, monkeypatch):
    base = tmp_path / "two_inputs"
    kmtl.export.for_serving(models["two"], base)
    before = _snapshot(base)

    def write_then_fail(model, tasks, specs, export_dir, *rest):
        Path(export_dir).mkdir(parents=True)
        (Path(export_dir) / "saved_model.pb").write_bytes(b"half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(kmtl.export.serving, "_write_saved_model", write_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        kmtl.export.for_serving(models["two"], base)
    assert os.listdir(base) == ["1"]
    assert _snapshot(base) == before


def test_version_landing_during_the_export_raises_file_exists(models, tmp_path, monkeypatch):
    # Two exporters chose version 1 (version=None); the other one's folder appears while this one writes.
    base = tmp_path / "two_inputs"
    write = kmtl.export.serving._write_saved_model

    def write_while_another_export_lands(model, tasks, specs, export_dir, *rest):
        write(model, tasks, specs, export_dir, *rest)
        (base / "1").mkdir()
        (base / "1" / "saved_model.pb").write_bytes(b"the other export")

    monkeypatch.setattr(kmtl.export.serving, "_write_saved_model", write_while_another_export_lands)
    with pytest.raises(FileExistsError):
        kmtl.export.for_serving(models["two"], base)
    assert os.listdir(base) == ["1"]
    assert _snapshot(base / "1") == {"saved_model.pb": b"the other export"}


# === Signature ===


@pytest.mark.parametrize(
    "key, input_names, outputs",
    [("single", {"feat"}, SINGLE_OUTPUTS), ("two", {"image", "meta"}, TWO_INPUT_OUTPUTS)],
)
def test_signature_has_named_inputs_and_per_task_outputs(exports, models, key, input_names, outputs):
    loaded = tf.saved_model.load(str(exports["paths"][key]))
    assert list(loaded.signatures) == ["serving_default"]
    serve = loaded.signatures["serving_default"]
    args, kwargs = serve.structured_input_signature
    assert args == () and set(kwargs) == input_names
    assert set(serve.structured_outputs) == set(outputs)  # auxiliary `domain` absent; no class names for `mood`
    for name, (dtype, inner_shape) in outputs.items():
        spec = serve.structured_outputs[name]
        assert spec.dtype == dtype, name
        assert tuple(spec.shape) == (None,) + inner_shape, name

    result = serve(**{n: tf.constant(v) for n, v in exports["inputs"][key].items()})
    for name, (dtype, inner_shape) in outputs.items():
        assert tuple(result[name].shape) == (6,) + inner_shape, name


# === Equality with Keras, in a process without kmtl ===


def _expected_outputs(model, inputs):
    predictions = model.predict(inputs, verbose=0)
    expected = {}
    for task in model.tasks:
        if task.auxiliary:
            continue
        value = predictions[task.name]
        if task.kind == "binary" or (task.kind == "regression" and task.units == 1):
            value = value.reshape(-1)
        expected[task.name] = value
    return expected


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_export_matches_keras_predict_without_kmtl(exports, models):
    returncode, stdout, stderr = exports["background"]["loader"].result()
    assert returncode == 0, stderr[-3000:]
    assert "LOADED WITHOUT KMTL" in stdout

    for key, outputs in (("single", SINGLE_OUTPUTS), ("two", TWO_INPUT_OUTPUTS)):
        model, inputs = models[key], exports["inputs"][key]
        with np.load(exports["root"] / f"{key}_outputs.npz") as data:
            served = {name: data[name] for name in data.files}
        assert set(served) == set(outputs)
        expected = _expected_outputs(model, inputs if key == "two" else inputs["feat"])
        for name, value in expected.items():
            assert served[name].shape == value.shape, name
            np.testing.assert_allclose(served[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
        for task in model.tasks:
            if task.kind == "multiclass" and not task.auxiliary:
                ids = np.argmax(expected[task.name], axis=-1)
                np.testing.assert_array_equal(served[f"{task.name}_class_id"], ids)
                assert served[f"{task.name}_class_id"].dtype == np.int64
                if task.label_names:
                    np.testing.assert_array_equal(served[f"{task.name}_class_name"], np.array(task.label_names)[ids])

    # The comparison is meaningful: in training mode (batch statistics, dropout) the outputs differ.
    single, x = models["single"], exports["inputs"]["single"]["feat"]
    weights = single.get_weights()
    training_mode = single(x, training=True)["age"].numpy().reshape(-1)
    single.set_weights(weights)  # a training-mode call moves the BatchNormalization statistics
    assert not np.allclose(training_mode, single.predict(x, verbose=0)["age"].reshape(-1), atol=1e-3)


# === saved_model_cli ===


def test_saved_model_cli_show_lists_every_output(exports):
    returncode, stdout, stderr = exports["background"]["show"].result()
    assert returncode == 0, stderr[-3000:]
    assert "signature_def['serving_default']" in stdout
    assert "inputs['feat']" in stdout
    for name in SINGLE_OUTPUTS:
        assert f"outputs['{name}']" in stdout, name
    assert "outputs['domain']" not in stdout


def test_saved_model_cli_run_prints_outputs(exports):
    returncode, stdout, stderr = exports["background"]["run"].result()
    assert returncode == 0, stderr[-3000:]
    for name in SINGLE_OUTPUTS:
        assert f"Result for output key {name}:" in stdout, name


# === assets.extra ===


def test_model_description(exports):
    description = json.loads((exports["paths"]["single"] / "assets.extra" / "kmtl_model.json").read_text())
    assert description["signature"] == "serving_default"
    assert description["model"] == "faces"
    assert description["inputs"] == {"feat": {"shape": [None, 5], "dtype": "float32"}}
    assert description["outputs"] == {
        "smiling": ["smiling"],
        "hair": ["hair", "hair_class_id", "hair_class_name"],
        "mood": ["mood", "mood_class_id"],
        "tags": ["tags"],
        "age": ["age"],
        "pose": ["pose"],
    }
    assert [t["name"] for t in description["tasks"]] == ["smiling", "hair", "mood", "tags", "age", "pose"]
    assert description["tasks"][1]["label_names"] == HAIR


@pytest.mark.parametrize("key", ["single", "two"])
def test_rest_request_runs_against_the_signature(exports, key):
    path = exports["paths"][key]
    body = _read_rest(path)
    assert body["signature_name"] == "serving_default"
    assert len(body["instances"]) == 1
    instance = body["instances"][0]
    assert set(instance) == set(exports["inputs"][key])
    if key == "single":  # no examples given: zeros of the input shape
        assert instance == {"feat": [0.0] * 5}
    else:
        for name, value in exports["two_examples"].items():
            np.testing.assert_allclose(instance[name], value[0], rtol=1e-6)
    batch = {name: tf.constant([value], tf.float32) for name, value in instance.items()}
    outputs = _signature(path)(**batch)
    assert all(v.shape[0] == 1 for v in outputs.values())


@pytest.mark.parametrize("key", ["single", "two"])
def test_warmup_record_is_a_predict_request_for_the_signature(exports, models, key):
    path = exports["paths"][key]
    request = _read_warmup(path)
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.name == models[key].name
    assert set(request.inputs) == set(exports["inputs"][key])
    arrays = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    for name, array in arrays.items():
        width = exports["inputs"][key][name].shape[1]
        assert [d.size for d in request.inputs[name].tensor_shape.dim] == [1, width], name
        assert array.dtype == np.float32
    if key == "two":
        for name, value in exports["two_examples"].items():
            np.testing.assert_allclose(arrays[name][0], value[0], rtol=1e-6)
    outputs = _signature(path)(**arrays)  # what TF Serving replays at load time
    assert all(v.shape[0] == 1 for v in outputs.values())


def test_no_warmup_record_when_disabled(models, tmp_path):
    path = kmtl.export.for_serving(models["two"], tmp_path / "two_inputs", warmup=False)
    extra = path / "assets.extra"
    assert sorted(os.listdir(extra)) == ["kmtl_model.json", "rest_request.json"]


# === examples= ===


def test_examples_as_array_for_a_single_input_model(models, tmp_path):
    examples = np.arange(10, dtype="float64").reshape(2, 5)
    path = kmtl.export.for_serving(models["single"], tmp_path / "faces", examples=examples)
    assert _read_rest(path)["instances"] == [{"feat": [0.0, 1.0, 2.0, 3.0, 4.0]}]
    request = _read_warmup(path)
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["feat"]), examples[:1].astype("float32"))


@pytest.mark.parametrize(
    "examples, match",
    [
        ({"image": np.ones((2, 4))}, "meta"),  # a dict missing an input names it
        (np.ones((2, 4)), "image.*meta"),  # one array for a two-input model: the error lists the input names
    ],
)
def test_bad_examples_raise_and_leave_nothing(models, tmp_path, examples, match):
    base = tmp_path / "two_inputs"
    with pytest.raises(ValueError, match=match):
        kmtl.export.for_serving(models["two"], base, examples=examples)
    assert not base.exists() or list(base.iterdir()) == []


def test_examples_of_the_wrong_width_raise(models, tmp_path):
    # Warm-up records TF Serving cannot run make the model version fail to load, so the export must refuse them
    # instead of writing a (1, 7) `image` tensor for an input of shape (None, 4).
    base = tmp_path / "two_inputs"
    with pytest.raises(ValueError, match="image"):
        kmtl.export.for_serving(models["two"], base, examples={"image": np.ones((2, 7)), "meta": np.ones((2, 3))})
    assert not base.exists() or list(base.iterdir()) == []


def test_rename_never_replaces_an_empty_version_folder(tmp_path):
    """A plain rename would silently replace an empty folder another exporter just created."""
    from kmtl.export.serving import rename_no_replace

    source, target = tmp_path / "staging", tmp_path / "1"
    source.mkdir()
    (source / "saved_model.pb").write_bytes(b"new")
    target.mkdir()
    with pytest.raises(FileExistsError, match="never overwrites"):
        rename_no_replace(source, target)
    assert list(target.iterdir()) == [] and (source / "saved_model.pb").read_bytes() == b"new"
    rename_no_replace(source, tmp_path / "2")
    assert (tmp_path / "2" / "saved_model.pb").read_bytes() == b"new"


# === What the export is given ===


def test_a_plain_keras_model_is_refused_saying_what_is_needed(tmp_path):
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"Expected a kmtl\.MultiTaskModel.*Received: model=Sequential"):
        kmtl.export.for_serving(plain, tmp_path / "plain")
    assert list(tmp_path.iterdir()) == []


def test_a_file_as_base_dir_is_refused_and_left_alone(models, tmp_path):
    target = tmp_path / "faces"
    target.write_bytes(b"user's file")
    with pytest.raises(ValueError, match=r"Expected a folder for the model's versions.*is a file"):
        kmtl.export.for_serving(models["two"], target)
    assert target.read_bytes() == b"user's file"
