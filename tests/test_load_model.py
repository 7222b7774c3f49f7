"""`kmtl.load_model`: a `.keras` file is checked before Keras reads it, so a bad file says what is wrong with it."""

import os
import zipfile

import keras
import numpy as np
import pytest

import kmtl


def make_model():
    """A plain Keras model with dict outputs (kmtl's own round trips are in tests/test_saving.py)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="x")
    model = keras.Model(x, {"a": keras.layers.Dense(1, activation="sigmoid", name="a")(x)})
    model.compile(optimizer="adam", loss={"a": "binary_crossentropy"})
    # One step builds the optimizer, so the file holds its state (Keras warns when loading an unbuilt one's).
    model.train_on_batch(np.ones((2, 3), "float32"), {"a": np.array([[0.0], [1.0]], "float32")})
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    model = make_model()
    model.save(path)
    return model, path


def test_loads_a_valid_file_with_safe_mode(saved):
    model, path = saved
    loaded = kmtl.load_model(path)
    assert isinstance(loaded, keras.Model) and loaded.optimizer is not None
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["a"], model.predict(x, verbose=0)["a"], atol=1e-6)


def test_truncated_file_says_it_is_not_a_valid_keras_file(saved, tmp_path):
    path = tmp_path / "truncated.keras"
    data = saved[1].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"not a valid \.keras file \(truncated or not a Keras archive\): .*truncated"):
        kmtl.load_model(path)


def test_random_bytes_say_it_is_not_a_valid_keras_file(tmp_path):
    path = tmp_path / "random.keras"
    path.write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match=r"not a valid \.keras file .*random\.keras"):
        kmtl.load_model(path)


def test_a_zip_without_the_keras_entries_is_refused(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"not a valid \.keras file .*lacks config\.json"):
        kmtl.load_model(path)


def test_a_corrupted_entry_is_refused(saved, tmp_path):
    """A flipped byte inside an entry: the archive's checksums catch it before Keras reads the weights."""
    path = tmp_path / "corrupted.keras"
    data = bytearray(saved[1].read_bytes())
    with zipfile.ZipFile(saved[1]) as archive:
        info = archive.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the entry's data
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"not a valid \.keras file .*model\.weights\.h5"):
        kmtl.load_model(path)


@pytest.mark.parametrize(
    "name, error, match",
    [
        ("missing.keras", FileNotFoundError, r"No file at .*missing\.keras"),
        ("model.h5", ValueError, r"Expected a path ending in \.keras\. Received: .*model\.h5"),
        ("folder", ValueError, r"is a folder.*tf\.saved_model\.load"),
    ],
)
def test_bad_paths(tmp_path, name, error, match):
    (tmp_path / "folder").mkdir()
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(error, match=match):
        kmtl.load_model(tmp_path / name)
