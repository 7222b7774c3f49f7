"""The nlp-tagging recipe: hierarchy wiring over sequences, padding invariance, training, save/load, CLI."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl.recipes import nlp_tagging as nt

SMALL = {"embedding_dim": 4, "units": 4, "label_embedding_dim": 2, "dropout": 0.0}


def _model(layout="hierarchy", crf=True):
    data = nt.load_data(batch_size=4, num_sentences=12, crf=crf)
    return data, nt.build_model(layout, **data.model_settings, **SMALL)


def _level_of(model, tensor):
    """The name of the `level_<l>` layer a head's input comes from (through the head's Dense layer)."""
    layer = tensor._keras_history.operation
    while not layer.name.startswith("level_"):
        layer = layer.input._keras_history.operation if not isinstance(layer.input, list) else \
            layer.input[0]._keras_history.operation
    return layer.name


def test_hierarchy_wires_each_task_at_its_level_and_flat_on_top():
    _, model = _model()
    assert {t: _level_of(model, model.get_layer(f"{t}_emissions").input) for t in ("chunk", "ner")} == \
        {"chunk": "level_2", "ner": "level_3"}
    assert _level_of(model, model.get_layer("pos").input) == "level_1"
    # Level 2 reads level 1, the embeddings (shortcut) and pos's label embedding; level 3 also chunk's.
    assert [t.shape[-1] for t in model.get_layer("level_2_inputs").input] == [8, 4, 2]
    assert [t.shape[-1] for t in model.get_layer("level_3_inputs").input] == [8, 4, 2, 2]
    assert isinstance(model.get_layer("ner"), kmtl.layers.CRF)
    _, flat = _model("flat")
    assert {_level_of(flat, flat.get_layer(n).input) for n in ("pos", "chunk_emissions", "ner_emissions")} == \
        {"level_3"}


def test_padding_changes_nothing():
    data, model = _model()
    model.compile(optimizer="sgd")
    inputs, labels = next(iter(data.train))
    longer = {"tokens": tf.pad(inputs["tokens"], [[0, 0], [0, 3]], constant_values="")}
    padded_labels = {k: tf.pad(v, [[0, 0], [0, 3]], constant_values=-1) for k, v in labels.items()}

    def run(x, y):
        with tf.GradientTape() as tape:
            predictions = model(x, training=False)
            losses = model.task_losses(y, predictions)
        gradients = tape.gradient(keras.ops.sum(losses), model.trainable_variables)
        metrics = model.evaluate(x, y, verbose=0, return_dict=True)
        return losses.numpy(), [None if g is None else g.numpy() for g in gradients], metrics

    losses, gradients, metrics = run(inputs, labels)
    losses_2, gradients_2, metrics_2 = run(longer, padded_labels)
    np.testing.assert_allclose(losses_2, losses, atol=1e-6)
    for want, got in zip(gradients, gradients_2):
        assert (want is None) == (got is None)
        if want is not None:
            np.testing.assert_allclose(got, want, atol=1e-6)
    assert metrics_2 == pytest.approx(metrics, abs=1e-6)


def test_unknown_words_map_to_the_oov_id():
    _, model = _model(crf=False)
    out = model({"tokens": tf.constant([["never-seen-word", "the", ""]])})
    assert out["pos"].shape == (1, 3, model.task("pos").num_classes)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="Received: layout='deep'"):
        nt.build_model("deep")
    with pytest.raises(ValueError, match="Received: source='conll2000'"):
        nt.load_data(source="conll2000")


@pytest.mark.slow  # trains one epoch, saves, reloads and scores a tiny tagger (~45 s on 2 cores: every batch length traces the CRF scans)
def test_one_epoch_trains_saves_and_loads_with_string_inputs(tmp_path):
    data, model = _model()
    nt.compile_model(model)
    history = model.fit(data.train, validation_data=data.val, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "val_ner_accuracy" in history.history
    path = tmp_path / "tagger.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    tokens = {"tokens": tf.constant([["the", "dog", "sees", "Paris", "."], ["Ada", "runs", "", "", ""]])}
    for name, value in model.predict(tokens, verbose=0).items():
        np.testing.assert_allclose(restored.predict(tokens, verbose=0)[name], value, atol=1e-5)
    scores = nt.tagging_scores(model, data.test)
    assert set(scores) == {"pos", "chunk", "ner"} and 0.0 <= scores["ner"]["token_accuracy"] <= 1.0
    if "span_f1" in scores["ner"]:
        assert 0.0 <= scores["ner"]["span_f1"] <= 1.0


def test_crfsuite_baseline_scores():
    pytest.importorskip("sklearn_crfsuite", reason="the baseline needs the `baselines` extra (sklearn-crfsuite)")
    pytest.importorskip("seqeval", reason="span scores need the `text` extra (seqeval)")
    scores = nt.baseline_scores(num_sentences=60)
    assert set(scores) == {"pos", "chunk", "ner"}
    assert scores["pos"]["token_accuracy"] > 0.8 and 0.0 <= scores["ner"]["span_f1"] <= 1.0
