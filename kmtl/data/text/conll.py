"""Loaders of CoNLL files into kmtl's sentence format: CoNLL-2000, CoNLL-2003 and any CoNLL-U file.

CoNLL-2000 (chunking) has lines `word POS chunk`; CoNLL-2003 (NER) `word POS chunk NER`, with `-DOCSTART-`
lines between documents; sentences end at a blank line. CoNLL-U files are read with the `conllu` package
(`pip install kmtl[text]`): each token's `form` is its token, and any field (`upos`, `xpos`, `deprel`) or
morphological feature (`feats:Case`) can be a column; `_` (no value) is a missing tag.
"""

from __future__ import annotations

import os
from typing import Sequence

CONLL2000_COLUMNS = ("pos", "chunk")
CONLL2003_COLUMNS = ("pos", "chunk", "ner")
CONLLU_COLUMNS = ("upos", "xpos", "deprel")


def read_conll(path: str | os.PathLike, columns: Sequence[str]) -> list[dict]:
    """Reads a whitespace-separated CoNLL file: the token, then one tag per name in `columns`.

    Raises:
        ValueError: naming the file and line of a row with another number of fields.
    """
    sentences, current = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if current:
                    sentences.append(_sentence(current, columns))
                current = []
                continue
            if len(fields) != len(columns) + 1:
                raise ValueError(
                    f"{path}, line {number}: expected {len(columns) + 1} fields (token, {', '.join(columns)}). "
                    f"Received: {line.strip()!r}"
                )
            current.append(fields)
    if current:
        sentences.append(_sentence(current, columns))
    return sentences


def _sentence(rows, columns):
    sentence = {"tokens": [row[0] for row in rows]}
    for i, column in enumerate(columns, start=1):
        sentence[column] = [row[i] for row in rows]
    return sentence


def load_conll2000(path: str | os.PathLike) -> list[dict]:
    """CoNLL-2000 chunking (`word POS chunk`): columns `pos` and `chunk`."""
    return read_conll(path, CONLL2000_COLUMNS)


def load_conll2003(path: str | os.PathLike) -> list[dict]:
    """CoNLL-2003 NER (`word POS chunk NER`): columns `pos`, `chunk` and `ner`."""
    return read_conll(path, CONLL2003_COLUMNS)


def load_conllu(path: str | os.PathLike, columns: Sequence[str] = CONLLU_COLUMNS) -> list[dict]:
    """Reads a CoNLL-U file with the `conllu` package; multiword-token ranges and empty nodes are skipped.

    Args:
        path: a `.conllu` file.
        columns: token fields (`upos`, `xpos`, `deprel`, `lemma`, ...) or `feats:<Feature>` for a morphological
            feature (`feats:Case`). A value `_` or an absent feature is a missing tag.
    """
    try:
        import conllu
    except ImportError as error:
        raise ImportError("Reading CoNLL-U files needs the `conllu` package: pip install 'kmtl[text]'") from error
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    sentences = []
    for token_list in conllu.parse(text):
        tokens = [t for t in token_list if isinstance(t["id"], int)]
        if not tokens:
            continue
        sentence = {"tokens": [t["form"] for t in tokens]}
        for column in columns:
            sentence[column] = [_field(token, column) for token in tokens]
        sentences.append(sentence)
    return sentences


def _field(token, column):
    if column.startswith("feats:"):
        value = (token["feats"] or {}).get(column[len("feats:"):])
    else:
        value = token[column]
    return None if value in (None, "_") else str(value)
