"""The linear-chain CRF layer and loss: exact against brute-force enumeration, gradients, masks, kmtl integration."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl.layers.crf import CRF, crf_decode, crf_log_partition, crf_marginals
from kmtl.losses import CRFLoss, crf_log_likelihood
from layer_testing import fit_and_round_trip


def _random_potentials(seed, batch=3, steps=4, tags=3):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(batch, steps, tags)).astype("float32"),
        rng.normal(size=(tags, tags)).astype("float32"),
        rng.normal(size=tags).astype("float32"),
        rng.normal(size=tags).astype("float32"),
    )


def _path_score(emissions, transitions, start, end, path):
    score = start[path[0]] + emissions[0, path[0]] + end[path[-1]]
    for t in range(1, len(path)):
        score += transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return score


def _brute_force(emissions, transitions, start, end, length, observed=None):
    """log Z, log Z over paths agreeing with `observed` (-1: free) and the best path, over the first `length` steps."""
    tags = emissions.shape[-1]
    scores, constrained, best = [], [], (-np.inf, None)
    for path in itertools.product(range(tags), repeat=length):
        score = _path_score(emissions.astype(np.float64), transitions, start, end, path)
        scores.append(score)
        if observed is None or all(o < 0 or o == p for o, p in zip(observed, path)):
            constrained.append(score)
        if score > best[0]:
            best = (score, path)
    logsumexp = lambda values: float(np.logaddexp.reduce(np.array(values)))
    return logsumexp(scores), logsumexp(constrained), best


LENGTHS = [4, 1, 3]  # the second sentence has one real step, the third three


def _mask(steps=4):
    return np.array([[t < n for t in range(steps)] for n in LENGTHS])


def test_log_partition_and_best_path_equal_brute_force():
    emissions, transitions, start, end = _random_potentials(0)
    mask = _mask()
    log_z = keras.ops.convert_to_numpy(crf_log_partition(emissions, transitions, start, end, mask))
    path, score = map(keras.ops.convert_to_numpy, crf_decode(emissions, transitions, start, end, mask))
    for b, n in enumerate(LENGTHS):
        want_z, _, (want_score, want_path) = _brute_force(emissions[b], transitions, start, end, n)
        np.testing.assert_allclose(log_z[b], want_z, rtol=1e-5)
        assert tuple(path[b, :n].tolist()) == want_path  # exactly the same path
        np.testing.assert_allclose(score[b], want_score, rtol=1e-5)


def test_constrained_log_likelihood_marginalises_missing_tags():
    emissions, transitions, start, end = _random_potentials(1)
    mask = _mask()
    tags = np.array([[0, -1, 2, -1], [1, -1, -1, -1], [-1, -1, -1, 0]])  # last row: padding holds a tag
    observed = (tags >= 0) & mask
    ll = keras.ops.convert_to_numpy(crf_log_likelihood(emissions, transitions, start, end, tags, mask, observed))
    for b, n in enumerate(LENGTHS):
        log_z, log_z_observed, _ = _brute_force(emissions[b], transitions, start, end, n, tags[b, :n])
        np.testing.assert_allclose(ll[b], log_z_observed - log_z, rtol=1e-5, atol=1e-5)
    assert ll[2] == pytest.approx(0.0, abs=1e-5)  # no observed tag inside the sentence: nothing to explain


def test_marginals_equal_brute_force():
    emissions, transitions, start, end = _random_potentials(2, batch=1, steps=3)
    marginals = keras.ops.convert_to_numpy(crf_marginals(emissions, transitions, start, end))[0]
    log_z, _, _ = _brute_force(emissions[0], transitions, start, end, 3)
    for t in range(3):
        for c in range(3):
            observed = [-1] * 3
            observed[t] = c
            _, log_z_c, _ = _brute_force(emissions[0], transitions, start, end, 3, observed)
            np.testing.assert_allclose(marginals[t, c], np.exp(log_z_c - log_z), rtol=1e-5)


def test_gradients_match_finite_differences():
    emissions, transitions, start, end = (tf.constant(p, tf.float64) for p in _random_potentials(3, batch=2, steps=3))
    tags = tf.constant([[0, -1, 1], [2, 1, -1]])
    mask = tf.constant([[True, True, True], [True, True, False]])

    def nll(*potentials):
        return -tf.reduce_sum(crf_log_likelihood(*potentials, tags, mask, tf.logical_and(tags >= 0, mask)))

    theoretical, numerical = tf.test.compute_gradient(nll, [emissions, transitions, start, end], delta=1e-6)
    for want, got in zip(numerical, theoretical):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_padding_and_its_position_change_nothing():
    emissions, transitions, start, end = _random_potentials(4, batch=1, steps=3)
    padded = np.concatenate([np.zeros_like(emissions[:, :1]), emissions, np.full_like(emissions[:, :2], 5.0)], 1)
    mask = np.array([[False, True, True, True, False, False]])
    tags = np.array([[1, 0, -1, 2]])
    ll = crf_log_likelihood(emissions, transitions, start, end, tags[:, 1:], None, tags[:, 1:] >= 0)
    tags_padded = np.concatenate([tags, [[1, 1]]], 1)
    ll_padded = crf_log_likelihood(padded, transitions, start, end, tags_padded, mask, (tags_padded >= 0) & mask)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ll_padded), keras.ops.convert_to_numpy(ll), atol=1e-6)
    path = keras.ops.convert_to_numpy(crf_decode(emissions, transitions, start, end)[0])
    path_padded = keras.ops.convert_to_numpy(crf_decode(padded, transitions, start, end, mask)[0])
    assert path_padded[0, 1:4].tolist() == path[0].tolist()


def _tagger(tasks, vocabulary=6):
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocabulary, 4, mask_zero=True)(tokens)
    outputs = {task.name: kmtl.heads.task_head(task, x) for task in tasks}
    return kmtl.MultiTaskModel(tokens, outputs, tasks=tasks)


def test_crf_task_loss_in_a_model_is_the_mean_nll_per_labelled_token():
    task = kmtl.Task("ner", "multiclass", num_classes=3, per_step=True, loss=CRFLoss())
    model = _tagger([task])
    assert isinstance(model.get_layer("ner"), CRF)
    model.compile(optimizer="sgd")
    tokens = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    labels = np.array([[0, -1, 2, 1], [1, 2, -1, -1]])  # a tag on padding is ignored
    y_pred = model(tokens)
    losses = keras.ops.convert_to_numpy(model.task_losses({"ner": labels}, y_pred))
    emissions = model.get_layer("ner_emissions")(model.layers[1](tokens))
    crf = model.get_layer("ner")
    observed = (labels >= 0) & (tokens > 0)
    ll = crf_log_likelihood(*crf.potentials(emissions), labels, tokens > 0, observed)
    want = -np.sum(keras.ops.convert_to_numpy(ll)) / observed.sum()
    np.testing.assert_allclose(losses[0], want, rtol=1e-5)
    # Per-token metrics read the marginals; padded steps count as missing.
    marginals = keras.ops.convert_to_numpy(y_pred["ner"])
    np.testing.assert_allclose(marginals[tokens > 0].sum(-1), 1.0, rtol=1e-5)


def test_a_sentence_without_labels_adds_nothing():
    task = kmtl.Task("ner", "multiclass", num_classes=3, per_step=True, loss=CRFLoss())
    model = _tagger([task])
    model.compile(optimizer="sgd")
    tokens = np.array([[1, 2, 3], [4, 5, 1]])
    labelled = np.array([[0, 1, 2], [-1, -1, -1]])
    alone = model.task_losses({"ner": labelled[:1]}, model(tokens[:1]))
    mixed = model.task_losses({"ner": labelled}, model(tokens))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mixed), keras.ops.convert_to_numpy(alone), rtol=1e-6)


@pytest.mark.slow  # trains, saves and reloads a model (~8 s on 2 cores)
def test_crf_head_trains_and_round_trips(tmp_path):
    task = kmtl.Task("pos", "multiclass", num_classes=3, per_step=True, loss=CRFLoss())
    model = _tagger([task])
    tokens = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    labels = {"pos": np.array([[0, 1, 2, -1], [1, -1, -1, -1]])}
    crf = model.get_layer("pos")
    before = crf.transitions.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    history = model.fit(tokens, labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["pos_loss"][0]) and "pos_accuracy" in history.history
    assert not np.allclose(crf.transitions.numpy(), before)
    path = tmp_path / "crf.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(restored.predict(tokens, verbose=0)["pos"], model.predict(tokens, verbose=0)["pos"],
                               atol=1e-5)
    np.testing.assert_allclose(restored.evaluate(tokens, labels, verbose=0, return_dict=True)["pos_loss"],
                               model.evaluate(tokens, labels, verbose=0, return_dict=True)["pos_loss"], rtol=1e-5)


def test_layer_round_trip_helper(tmp_path):
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, CRF(3, transitions_initializer="glorot_uniform", name="crf")(inputs))
    fit_and_round_trip(model, np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32"),
                       np.full((2, 4, 3), 1 / 3, "float32"), tmp_path, atol=1e-6)


def test_crf_loss_without_a_crf_output_names_the_task():
    task = kmtl.Task("ner", "multiclass", num_classes=3, per_step=True, loss=CRFLoss())
    with pytest.raises(ValueError, match="Task 'ner'.*kmtl.layers.CRF"):
        kmtl.losses.masked_loss(task, kmtl.losses.resolve_loss(task.loss), np.zeros((1, 2)), np.ones((1, 2, 3)) / 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"num_tags": 1}, "num_tags"), ({"num_tags": 2.0}, "num_tags")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CRF(**kwargs)


def test_crf_head_refuses_a_task_that_is_not_a_tagger():
    task = kmtl.Task("kind", "multiclass", num_classes=3, loss=CRFLoss())
    with pytest.raises(ValueError, match="Task 'kind'.*per_step=True"):
        kmtl.heads.crf_head(task, keras.Input((None, 4)))
