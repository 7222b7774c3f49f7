"""The domain-adversarial recipe: two-domain data, the model with and without the adversary, report, export, CLI."""

import functools
import inspect
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kmtl.app.cli import main
from kmtl.app.train import train_recipe
from kmtl.data.images.fashion_mnist import FASHION_MNIST_DIR
from kmtl.layers import ScheduledGradientReversal
from kmtl.recipes import domain_adversarial as da
from kmtl.recipes.domain_adversarial import _data

FASHION_INSTALLED = (__import__("pathlib").Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz").is_file()


@pytest.fixture(scope="module")
def tiny():
    """Quick settings with batches of 8 source and 8 target examples: 64 per domain, 8 steps per epoch."""
    settings = da.RECIPE.settings(quick=True, batch_size=16, epochs=3)
    return settings, da.RECIPE.load(settings, seed=0)


# === Data ===


def test_moons_are_deterministic_and_the_target_is_the_rotated_task():
    from sklearn.datasets import make_moons

    a, b = da.generate_moons(50, 20, seed=1), da.generate_moons(50, 20, seed=1)
    np.testing.assert_array_equal(a[0].x_target, b[0].x_target)
    assert not np.allclose(a[0].x_source, da.generate_moons(50, 20, seed=2)[0].x_source)
    assert [len(part.y_target) for part in a] == [50, 20, 20]
    # The target's points are moons (labels unchanged) turned by ROTATION degrees about the centre.
    unturned = da.rotate(a[0].x_target, -da.ROTATION)
    points, labels = make_moons(50, noise=_data.MOONS_NOISE, random_state=1 * 10 + 1)
    np.testing.assert_allclose(unturned, points, atol=1e-5)
    np.testing.assert_array_equal(a[0].y_target, labels)
    np.testing.assert_allclose(da.rotate(np.array([[1.5, 0.25]]), 90.0), [[0.5, 1.25]], atol=1e-6)


def test_batches_are_half_labelled_source_half_unlabelled_target(tiny):
    settings, data = tiny
    assert data.model_settings["input_shape"] == (2,)
    assert data.model_settings["schedule_steps"] == 8 * 3  # steps per epoch x epochs: the schedule's span
    batches = list(data.train)
    assert len(batches) == 8
    for x, labels in batches:
        assert tuple(x.shape) == (16, 2)
        np.testing.assert_array_equal(labels["domain"], [0] * 8 + [1] * 8)
        assert set(labels["moon"].numpy()[:8]) <= {0, 1} and (labels["moon"].numpy()[8:] == -1).all()
    # Every training example once per epoch: the source points, and the target points, in some order.
    seen = np.concatenate([x.numpy()[8:] for x, _ in batches])
    np.testing.assert_allclose(np.sort(seen[:, 0]), np.sort(data.parts[0].x_target[:, 0]))
    # Validation keeps the source's main-task labels only, test the target's only.
    for dataset, labelled_domain in ((data.val, 0), (data.test, 1)):
        labels = np.concatenate([y["moon"].numpy() for _, y in dataset])
        domain = np.concatenate([y["domain"].numpy() for _, y in dataset])
        assert ((labels >= 0) == (domain == labelled_domain)).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source": "mnist"}, "source"),
        ({"shift": "invert"}, "shift"),  # a Fashion-MNIST shift with the synthetic source
        ({"batch_size": 1}, "batch_size"),
        ({"num_train": 0}, "num_train"),
        ({"tasks": ["domain"]}, "tasks"),
    ],
)
def test_bad_data_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        da.load_data(**kwargs)


def test_fashion_mnist_absent_names_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setattr(_data, "load_fashion_mnist", functools.partial(_data.load_fashion_mnist, path=tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        da.load_data("fashion-mnist", num_train=4, num_test=4)


def test_noise_shift_adds_clipped_gaussian_noise():
    clean = np.zeros((50, 28, 28, 1), "float32")
    noisy = da.shift_images(clean, "noise", seed=0)
    # Noise of sd 0.5 clipped at 0: a black pixel becomes on average E[max(N(0, 0.5), 0)] = 0.5 / sqrt(2 pi).
    assert abs(noisy.mean() - 0.5 / np.sqrt(2 * np.pi)) < 0.005 and noisy.min() == 0.0
    np.testing.assert_array_equal(noisy, da.shift_images(clean, "noise", seed=0))
    np.testing.assert_array_equal(da.shift_images(clean, "invert"), 1.0)


@pytest.mark.slow  # ~0.5 s: reads the 60,000 training images
@pytest.mark.skipif(not FASHION_INSTALLED, reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_target_is_the_shifted_clean_images():
    from kmtl.data import load_fashion_mnist

    train, _, test = da.load_fashion_domains(num_train=6, num_test=3, shift="invert", seed=0)
    clean, labels = load_fashion_mnist("train", image_size=28, limit=12)
    np.testing.assert_array_equal(train.x_source, clean[:6])
    np.testing.assert_array_equal(train.y_target, labels["category"][6:12])
    np.testing.assert_allclose(train.x_target, 1.0 - clean[6:12])
    assert test.x_source.shape == test.x_target.shape == (3, 28, 28, 1)


def test_recipe_defaults_are_the_functions_defaults():
    for function, names in ((da.build_model, da.RECIPE.model_settings), (da.load_data, da.RECIPE.data_settings)):
        parameters = inspect.signature(function).parameters
        for name in names:
            assert parameters[name].default == da.DEFAULTS[name], name
    assert inspect.signature(da.load_data).parameters["batch_size"].default == da.DEFAULTS["batch_size"]
    compile_parameters = inspect.signature(da.compile_model).parameters
    for name in ("weighting", "learning_rate", "optimizer"):
        assert compile_parameters[name].default == da.DEFAULTS[name], name


def test_sgd_anneals_its_rate_over_the_run_as_the_paper_does():
    """`optimizer="sgd"`: momentum 0.9 and mu_p = mu_0 / (1 + 10 p) ** 0.75 over the run's train steps."""
    schedule = da.AnnealedLearningRate(0.01, steps=50)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    for step in (0, 10, 25, 50, 80):
        expected = 0.01 / (1 + 10 * min(step / 50, 1)) ** 0.75
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)
        assert float(restored(step)) == pytest.approx(expected, rel=1e-6)
    sgd = da.make_optimizer("sgd", 0.01, steps=50)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9
    assert sgd.get_config()["learning_rate"]["config"] == {"initial": 0.01, "steps": 50, "alpha": 10.0, "beta": 0.75}
    assert isinstance(da.make_optimizer("adam", 0.01, steps=50), keras.optimizers.Adam)
    with pytest.raises(ValueError, match="Expected one of \\('adam', 'sgd'\\). Received: optimizer='rmsprop'"):
        da.make_optimizer("rmsprop", 0.01, steps=50)


@pytest.mark.slow  # ~5 s: a process that imports TensorFlow
def test_the_sgd_optimizer_deserialises_after_a_plain_import_kmtl():
    """A saved model's optimizer config names `kmtl>AnnealedLearningRate`; `import kmtl` alone must register it."""
    config = json.dumps(keras.optimizers.serialize(da.make_optimizer("sgd", 0.1, steps=40)))
    script = textwrap.dedent(
        """
        import json, sys
        import kmtl, keras
        optimizer = keras.optimizers.deserialize(json.loads(sys.argv[1]))
        assert "kmtl.recipes" not in sys.modules
        print(type(optimizer).__name__, float(optimizer.learning_rate))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, config], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["SGD", str(float(np.float32(0.1)))]


# === Model ===


def test_model_with_and_without_the_adversary_start_alike(tiny):
    """Same seed, same layers in the same order: the variants differ only in the reversal's strength."""
    _, data = tiny
    models = []
    for adversary in (True, False):
        keras.utils.set_random_seed(0)
        models.append(da.build_model(**data.model_settings, features=8, domain_units=4, adversary=adversary))
    for a, b in zip(*(m.weights for m in models)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    layers = [m.get_layer("gradient_reversal") for m in models]
    assert isinstance(layers[0], ScheduledGradientReversal)
    assert (layers[0].max_strength, layers[1].max_strength) == (1.0, 0.0)
    assert layers[0].total_steps == data.model_settings["schedule_steps"]
    assert models[0].schedule_steps == data.model_settings["schedule_steps"]  # compile_model's SGD anneals over it
    single = da.build_model(**{**data.model_settings, "tasks": data.tasks[:1]}, features=8)
    assert list(single.output) == ["moon"] and "gradient_reversal" not in [layer.name for layer in single.layers]
    image_model = da.build_model((28, 28, 1), 10, features=8)
    assert image_model.input.name == "image" and sorted(image_model.output) == ["category", "domain"]


@pytest.mark.parametrize("kwargs, match", [({"input_shape": (4, 4)}, "input_shape"), ({"adversary": 1}, "adversary")])
def test_build_model_checks_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        da.build_model(**{"input_shape": (2,), **kwargs})


def test_cli_names_a_bad_source_before_training(capsys):
    assert main(["train", "domain-adversarial", "--data", "mnist", "--no-export", "--verbose", "0"]) == 2
    assert "Expected one of ('synthetic', 'fashion-mnist'). Received: source='mnist'" in capsys.readouterr().err


# === Training, report, export (slow) ===


def report_rows(text):
    """The report's rows with numbers: label -> the numbers on its line."""
    rows = {}
    for line in text.splitlines():
        label, _, numbers = line.partition("   ")
        try:
            values = [float(v) for v in numbers.split()]
        except ValueError:
            continue
        if values:
            rows[label.strip()] = values
    return rows


@pytest.mark.slow  # ~3 s: three fits of 8 steps and the report's probe (~20 s when 2 cores are crowded)
def test_without_the_adversary_the_trunk_trains_as_the_main_task_alone(tiny):
    """Strength 0 stops the domain loss at the reversal: the trunk and main head end exactly as in a model that
    has no domain head (same seed and batches); with the adversary they do not. Then the report of both."""
    settings, _ = tiny
    settings = {**settings, "epochs": 1}
    models, data = da.train_both(settings, seed=0)
    alone_data = da.RECIPE.load(settings, seed=0, tasks=["moon"])
    keras.utils.set_random_seed(0)
    alone = da.RECIPE.compile(da.RECIPE.build(settings, alone_data), settings)
    alone.fit(alone_data.train, epochs=1, verbose=0, shuffle=False)
    on, off = models["adversary (max strength 1)"], models["no adversary"]
    layer = on.get_layer("gradient_reversal")
    assert int(layer.step.numpy()) == 8  # 8 steps; the last one used p = 7/8
    assert float(layer.strength_variable.numpy()) == pytest.approx(2 / (1 + np.exp(-10 * 7 / 8)) - 1, rel=1e-6)
    for name in ("trunk_dense1", "features", "moon"):
        for want, got in zip(alone.get_layer(name).get_weights(), off.get_layer(name).get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(on.get_layer("features").get_weights()[0], alone.get_layer("features").get_weights()[0],
                           atol=1e-4)

    text = da.report_of({"adversary (max strength 1)": on}, data, settings)  # one model: one predict trace
    rows = report_rows(text)
    assert list(rows) == ["adversary (max strength 1)", "majority class"], text
    assert len(rows["adversary (max strength 1)"]) == len(da.COLUMNS)
    assert all(0 <= v <= 1 for v in rows["adversary (max strength 1)"])
    # The majority class of the 64 target test points, counted here.
    assert rows["majority class"] == [pytest.approx(np.bincount(data.parts[2].y_target).max() / 64, abs=5e-4)]
    # The target and source columns are the main head's accuracy on each domain's test points.
    test = data.parts[2]
    for column, x, y in ((0, test.x_target, test.y_target), (1, test.x_source, test.y_source)):
        predicted = da.classes(on(x, training=False)["moon"].numpy())
        assert rows["adversary (max strength 1)"][column] == pytest.approx(np.mean(predicted == y), abs=5e-4)
    assert "5-fold" in text and "chance 0.500" in text


def test_domain_probe_finds_a_domain_cue_and_misses_none():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(400, 3))
    assert abs(da.domain_probe(same[:200], same[200:]) - 0.5) < 0.1
    shifted = same[200:] + np.array([2.0, 0.0, 0.0])  # the target differs along one feature
    assert da.domain_probe(same[:200], shifted) > 0.8


@pytest.mark.slow  # ~3 s: a quick run, its report (the probe), its export and a SavedModel load
def test_train_prints_the_probe_report_and_exports_the_main_task_equal_to_the_keras_model(tmp_path):
    lines = []
    run = train_recipe("domain-adversarial", quick=True, export_dir=tmp_path, verbose=0, log=lines.append)
    # The printed report's row holds the trained model's scores on the test split, the fresh probe's included.
    assert "\n" + run.recipe_report in lines
    test = da.RECIPE.load(da.RECIPE.settings(quick=True), seed=0).parts[2]
    expected = da.scores(run.model, test, "moon", seed=0)
    printed = report_rows(run.recipe_report)["adversary (max strength 1)"]
    assert printed == pytest.approx([expected[key] for key in da.COLUMNS], abs=5e-4)
    x = np.array([[0.0, 0.5], [1.0, -0.4], [2.0, 0.3]], "float32")
    expected = run.model.predict(x, verbose=0)["moon"]
    serving = tf.saved_model.load(str(run.export_path)).signatures["serving_default"]
    got = serving(x=tf.constant(x))
    assert sorted(got) == ["moon"]  # the domain head is auxiliary: not exported
    np.testing.assert_allclose(got["moon"].numpy().reshape(-1), expected.reshape(-1), rtol=1e-5, atol=1e-6)
