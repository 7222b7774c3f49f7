"""The nlp-tagging recipe: hierarchy wiring over sequences, padding invariance, training, save/load, CLI."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl.recipes import nlp_tagging as nt

SMALL = {"embedding_dim": 4, "units": 4, "label_embedding_dim": 2, "dropout": 0.0}


def _model(layout="hierarchy", crf=True, char_features=False):
    data = nt.load_data(batch_size=4, num_sentences=12, crf=crf)
    return data, nt.build_model(layout, **data.model_settings, **SMALL, char_features=char_features)


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


@pytest.mark.slow  # traces evaluate for two batch lengths of a three-task CRF tagger with characters: 20 to 60 s
# measured on the 2 shared cores under a load average of 12 to 15
def test_padding_changes_nothing():
    data, model = _model(char_features=True)  # the word and character paths both see the padding
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
    with pytest.raises(ValueError, match="Received: source='conllu'"):
        nt.load_data(source="synthetic+conllu")
    with pytest.raises(ValueError, match="Received: char_features='yes'"):
        nt.build_model(char_features="yes")


@pytest.mark.slow  # trains one epoch, saves, reloads and scores a tiny tagger (~45 s on 2 cores: every batch length traces the CRF scans)
def test_one_epoch_trains_saves_and_loads_with_string_inputs(tmp_path):
    data, model = _model(char_features=True)
    nt.compile_model(model)
    history = model.fit(data.train, validation_data=data.val, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "val_ner_accuracy" in history.history
    path = tmp_path / "tagger.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored.get_layer("characters"), kmtl.layers.CharacterCNN)
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


# Loads an export in a process that never imports kmtl: TensorFlow alone serves string tokens and returns tags.
SERVING_LOADER = """
import sys
import numpy as np
import tensorflow as tf
export_dir, inputs_path, outputs_path = sys.argv[1:]
serve = tf.saved_model.load(export_dir).signatures["serving_default"]
tokens = np.load(inputs_path)["tokens"].astype(object)
outputs = {name: value.numpy() for name, value in serve(tokens=tf.constant(tokens, tf.string)).items()}
outputs = {name: value.astype(str) if value.dtype == object else value for name, value in outputs.items()}
np.savez(outputs_path, **outputs)
assert not any(name == "kmtl" or name.startswith("kmtl.") for name in sys.modules)
print("LOADED WITHOUT KMTL")
"""


@pytest.mark.slow  # exports an untrained tiny tagger, pos (softmax) below ner (CRF), and loads it in a fresh
# process (8.4 s measured on 2 quiet cores; about a minute when other jobs load them: TensorFlow's import)
def test_export_serves_string_tokens_and_returns_tags_without_kmtl(tmp_path):
    import json
    import subprocess
    import sys

    from kmtl.layers.crf import crf_decode, crf_log_partition, crf_potentials

    keras.utils.set_random_seed(0)
    data = nt.load_data(batch_size=4, num_sentences=12, crf=True, tasks=["pos", "ner"])
    model = nt.build_model(**data.model_settings, **SMALL, char_features=True)  # characters split inside the export
    path = kmtl.export.for_serving(model, tmp_path / "tagger", warmup=False)  # default example: one token, padding
    request = json.loads((path / "assets.extra" / "rest_request.json").read_text())
    assert request["instances"][0]["tokens"][:2] == ["example", ""]
    tokens = np.array([["the", "dog", "sees", "Paris", "."], ["Ada", "never-seen", "", "", ""]])
    np.savez(tmp_path / "inputs.npz", tokens=tokens)
    result = subprocess.run([sys.executable, "-c", SERVING_LOADER, str(path), str(tmp_path / "inputs.npz"),
                             str(tmp_path / "outputs.npz")], capture_output=True, text=True, timeout=120)
    assert "LOADED WITHOUT KMTL" in result.stdout, result.stderr[-2000:]

    expected = model({"tokens": tf.constant(tokens)}, training=False)
    with np.load(tmp_path / "outputs.npz") as served:
        assert sorted(served.files) == sorted(
            [f"{t}{s}" for t in ("pos", "ner") for s in ("", "_class_id", "_class_name")] + ["ner_path_log_probability"])
        for task in model.tasks:
            names = np.array(task.label_names)
            potentials = crf_potentials(expected[task.name])
            if potentials is None:  # softmax head: each token's most likely tag
                ids = np.argmax(expected[task.name], axis=-1)
            else:  # CRF head: the Viterbi path, and its log-probability score - log Z
                ids, score = (np.asarray(v) for v in crf_decode(*potentials))
                log_z = np.asarray(crf_log_partition(*potentials))
                np.testing.assert_allclose(served[f"{task.name}_path_log_probability"], score - log_z, atol=1e-5)
            np.testing.assert_array_equal(served[f"{task.name}_class_id"], ids)
            np.testing.assert_array_equal(served[f"{task.name}_class_name"], names[ids])
            np.testing.assert_allclose(served[task.name], expected[task.name], atol=1e-5)


class _FakeComparison:
    def __init__(self):
        self.notes = []

    def table(self):
        return "task  kmtl table"


def test_compare_prints_the_crfsuite_baseline_beside_kmtl(monkeypatch, capsys):
    """`kmtl compare nlp-tagging` runs the recipe's declared baseline on the same split (kmtl's models faked)."""
    pytest.importorskip("sklearn_crfsuite", reason="the baseline needs the `baselines` extra (sklearn-crfsuite)")
    pytest.importorskip("seqeval", reason="span scores need the `text` extra (seqeval)")
    import kmtl.evaluation.baselines
    from kmtl.app.cli import main

    assert nt.RECIPE.baselines is nt.baseline_report
    monkeypatch.setattr(kmtl.evaluation.baselines, "compare_single_task", lambda *a, **k: _FakeComparison())
    assert main(["compare", "nlp-tagging", "--quick"]) == 0
    out = capsys.readouterr().out
    report = out[out.index("Baseline: sklearn-crfsuite"):out.index("task  kmtl table")].splitlines()
    assert report[1].split() == ["task", "token_accuracy", "span_precision", "span_recall", "span_f1"]
    rows = {line.split()[0]: line.split()[1:] for line in report[2:5]}
    # The same numbers as baseline_scores on the quick run's split (source and number of sentences, data seed 0).
    expected = nt.baseline_scores("synthetic", 0, nt.QUICK["num_sentences"])
    assert float(rows["pos"][0]) == pytest.approx(expected["pos"]["token_accuracy"], abs=5e-5)
    assert rows["pos"][1:] == ["-", "-", "-"]
    assert float(rows["ner"][3]) == pytest.approx(expected["ner"]["span_f1"], abs=5e-5)


def test_compare_notes_a_missing_baseline_extra_in_one_line(monkeypatch):
    import sys

    from kmtl.app.compare import baseline_report

    monkeypatch.setitem(sys.modules, "sklearn_crfsuite", None)  # `import sklearn_crfsuite` raises ImportError
    note = baseline_report(nt.RECIPE, nt.RECIPE.settings(quick=True))
    assert note == "Baseline skipped (The CRF baseline needs `sklearn-crfsuite`: pip install 'kmtl[baselines]')."


def test_recipe_baselines_must_be_callable():
    import dataclasses

    with pytest.raises(ValueError, match="Received: baselines='crfsuite'"):
        dataclasses.replace(nt.RECIPE, baselines="crfsuite")


def _write_mixed_sources(tmp_path):
    """A CoNLL-2000 file (pos, chunk) and a CoNLL-U file (upos, xpos with gaps `_`, deprel), 10 sentences each."""
    rng = np.random.default_rng(0)
    chunks, tree = [], []
    for _ in range(10):
        words = rng.choice(["the", "dog", "runs", "Ada"], size=int(rng.integers(2, 5)))
        chunks.append("".join(f"{w} {'DT' if w == 'the' else 'NN'} {'B-NP' if i == 0 else 'I-NP'}\n"
                              for i, w in enumerate(words)))
        tree.append("".join(f"{i + 1}\t{w}\t_\t{'DET' if w == 'the' else 'NOUN'}\t{rng.choice(['A', 'B', '_'])}\t_\t"
                            f"{i}\t{'root' if i == 0 else 'dep'}\t_\t_\n" for i, w in enumerate(words)))
    (tmp_path / "chunks.txt").write_text("\n".join(chunks))
    (tmp_path / "tree.conllu").write_text("\n".join(tree) + "\n")
    return f"conll2000:{tmp_path / 'chunks.txt'}+conllu:{tmp_path / 'tree.conllu'}"


def test_mixed_sources_keep_their_tasks_and_the_crf_sums_over_missing_tokens(tmp_path):
    """Two corpora annotated for different layers in one batch: each sentence is scored on its own corpus' tasks,
    and a CRF task's loss sums over the tags of its tokens missing inside a labelled sentence (brute force)."""
    pytest.importorskip("conllu", reason="CoNLL-U reading needs the `conllu` extra (kmtl[text])")
    from test_crf import _brute_force

    from kmtl.layers.crf import crf_potentials

    source = _write_mixed_sources(tmp_path)
    tasks = nt.load_data(source=source, crf=True).tasks
    assert [t.name for t in tasks] == ["pos", "chunk", "upos", "xpos", "deprel"]
    # CRF on conll2000's span task, and on every task of the span-less CoNLL-U source.
    assert [t.name for t in tasks if isinstance(t.loss, kmtl.losses.CRFLoss)] == ["chunk", "upos", "xpos", "deprel"]
    data = nt.load_data(batch_size=32, source=source, crf=True, tasks=["pos", "xpos"])  # one task of each corpus
    inputs, labels = next(iter(data.train))  # both corpora's training sentences (8 + 8) in one batch
    labels = {k: v.numpy() for k, v in labels.items()}
    real = inputs["tokens"].numpy() != b""
    from_tree = ~(labels["pos"] >= 0).any(axis=1)  # no pos tags: a CoNLL-U sentence
    assert from_tree.sum() == 8 and (labels["xpos"][~from_tree] < 0).all()
    gaps = (labels["xpos"] < 0) & real & from_tree[:, None]
    assert gaps.any() and (labels["xpos"][real & ~gaps & from_tree[:, None]] >= 0).all()

    model = nt.build_model(**data.model_settings, **SMALL)
    model.compile(optimizer="sgd")
    outputs = model(inputs)
    losses = keras.ops.convert_to_numpy(model.task_losses(labels, outputs))
    emissions, transitions, start, end, _ = (keras.ops.convert_to_numpy(p) for p in crf_potentials(outputs["xpos"]))
    total = 0.0
    for row in np.flatnonzero(from_tree):
        length = int(real[row].sum())
        log_z, log_z_observed, _ = _brute_force(emissions[row], transitions, start, end, length,
                                                labels["xpos"][row, :length])
        total += log_z - log_z_observed
    observed = (labels["xpos"] >= 0) & real
    np.testing.assert_allclose(losses[[t.name for t in model.tasks].index("xpos")], total / observed.sum(), rtol=1e-5)
