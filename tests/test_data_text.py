"""kmtl.data.text: the sentence format, CoNLL loaders on files the tests write, the synthetic grammar, batches."""

import numpy as np
import pytest

from kmtl.data import text


def test_conll2000_and_conll2003(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("He PRP B-NP\nran VBD B-VP\n. . O\n\nDogs NNS B-NP\n")
    sentences = text.load_conll2000(path)
    assert sentences == [{"tokens": ["He", "ran", "."], "pos": ["PRP", "VBD", "."], "chunk": ["B-NP", "B-VP", "O"]},
                         {"tokens": ["Dogs"], "pos": ["NNS"], "chunk": ["B-NP"]}]
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")
    assert text.load_conll2003(path) == [
        {"tokens": ["EU", "rejects"], "pos": ["NNP", "VBZ"], "chunk": ["B-NP", "B-VP"], "ner": ["B-ORG", "O"]}]
    path.write_text("EU NNP B-NP\n")
    with pytest.raises(ValueError, match="line 1: expected 4 fields"):
        text.load_conll2003(path)


def test_conllu_fields_features_and_missing(tmp_path):
    pytest.importorskip("conllu", reason="CoNLL-U reading needs the `conllu` extra (kmtl[text])")
    path = tmp_path / "tiny.conllu"
    path.write_text(
        "# text = Evde kal\n"
        "1-2\tEvde\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "1\tEv\tev\tNOUN\tNN\tCase=Loc\t2\tobl\t_\t_\n"
        "2\tde\t_\tADP\t_\t_\t0\troot\t_\t_\n\n"
    )
    sentences = text.load_conllu(path, ["upos", "xpos", "feats:Case", "deprel"])
    assert sentences == [{"tokens": ["Ev", "de"], "upos": ["NOUN", "ADP"], "xpos": ["NN", None],
                          "feats:Case": ["Loc", None], "deprel": ["obl", "root"]}]


def test_hironsan_format(tmp_path):
    path = tmp_path / "iob_sents.txt"
    path.write_text("東京\tKANJI\t名詞\t固有名詞\t*\tB-LOC\nへ\tHIRAG\t助詞\t格助詞\t*\tO\n\n")
    assert text.load_hironsan(str(path)) == [{"tokens": ["東京", "へ"], "pos": ["名詞", "助詞"], "ner": ["B-LOC", "O"]}]


def test_synthetic_is_deterministic_and_higher_tasks_follow_lower_ones():
    first, again = text.generate_tagged_sentences(50, seed=3), text.generate_tagged_sentences(50, seed=3)
    assert first == again and first != text.generate_tagged_sentences(50, seed=4)
    for sentence in first:
        for pos, chunk, ner in zip(sentence["pos"], sentence["chunk"], sentence["ner"]):
            assert (ner != "O") == (pos == "PROPN")  # entities are exactly the proper nouns
            assert chunk.endswith("NP") == (pos in ("DET", "ADJ", "NOUN", "PROPN"))
    assert {t for s in first for t in s["ner"]} <= set(text.NER_TAGS)


def test_encode_pads_and_marks_missing():
    sentences = [{"tokens": ["a", "b", "c"], "pos": ["X", None, "Y"]}, {"tokens": ["d"]}]
    tokens, labels = text.encode(sentences, {"pos": ["X", "Y"]})
    assert tokens.tolist() == [["a", "b", "c"], ["d", "", ""]]
    assert labels["pos"].tolist() == [[0, -1, 1], [-1, -1, -1]]
    with pytest.raises(ValueError, match="column 'pos': tag 'Z'"):
        text.encode([{"tokens": ["a"], "pos": ["Z"]}], {"pos": ["X"]})
    with pytest.raises(ValueError, match="Sentence 0, column 'pos': expected 2 tags"):
        text.check_sentences([{"tokens": ["a", "b"], "pos": ["X"]}], ["pos"])


def test_split_is_deterministic_and_complete():
    items = list(range(20))
    train, val, test = text.split_sentences(items, seed=0)
    assert (len(train), len(val), len(test)) == (16, 2, 2)
    assert sorted(train + val + test) == items and text.split_sentences(items, seed=0) == (train, val, test)


def test_text_dataset_batches_to_their_longest_sentence():
    sentences = [{"tokens": ["a"] * n, "pos": ["X"] * n} for n in (2, 3, 5)]
    batches = list(text.text_dataset(sentences, {"pos": ["X"]}, batch_size=2))
    assert [b[0]["tokens"].shape for b in batches] == [(2, 3), (1, 5)]
    np.testing.assert_array_equal(batches[0][1]["pos"].numpy(), [[0, 0, -1], [0, 0, 0]])


def test_mix_corpora_keeps_each_sentences_columns(tmp_path):
    pytest.importorskip("conllu", reason="CoNLL-U reading needs the `conllu` extra (kmtl[text])")
    (tmp_path / "chunks.txt").write_text("He PRP B-NP\nran VBD B-VP\n")
    (tmp_path / "tree.conllu").write_text("1\tEv\tev\tNOUN\tNN\t_\t0\troot\t_\t_\n"
                                          "2\tde\tde\tADP\t_\t_\t1\tcase\t_\t_\n\n")
    chunks, tree = text.load_conll2000(tmp_path / "chunks.txt"), text.load_conllu(tmp_path / "tree.conllu")
    mixed = text.mix_corpora([chunks, tree], [None, {"pos": "upos", "xpos": "xpos"}])
    assert mixed == [{"tokens": ["He", "ran"], "pos": ["PRP", "VBD"], "chunk": ["B-NP", "B-VP"], "xpos": None},
                     {"tokens": ["Ev", "de"], "pos": ["NOUN", "ADP"], "chunk": None, "xpos": ["NN", None]}]
    # Missing for the whole sentence (another corpus' layer) or for one token: -1 either way.
    _, labels = text.encode(mixed, {c: text.tag_vocabulary(mixed, c) for c in ("pos", "chunk", "xpos")})
    np.testing.assert_array_equal(labels["chunk"], [[0, 1], [-1, -1]])
    np.testing.assert_array_equal(labels["xpos"], [[-1, -1], [0, -1]])

    with pytest.raises(ValueError, match=r"Corpus 1: columns \['upos '\] are in none"):
        text.mix_corpora([chunks, tree], [None, {"pos": "upos "}])
    with pytest.raises(ValueError, match="Corpus 0: Sentence 0, column 'pos': expected 2 tags"):
        text.mix_corpora([[{"tokens": ["a", "b"], "pos": ["DET"]}]])
    with pytest.raises(ValueError, match="Expected one entry .* per corpus, 2 in all. Received: 1 entries"):
        text.mix_corpora([chunks, tree], [None])
