"""The one format of tagged text in kmtl, its vocabularies, deterministic splits and padded batches.

A corpus is a list of sentences; a sentence is a dict `{"tokens": [str, ...], <column>: [tag or None, ...]}` with
one tag per token in each column (`None`: that token's tag is missing). A column a sentence lacks, or holds as
`None`, is missing for the whole sentence, so corpora annotated for different layers mix in one batch.

`text_dataset` turns sentences into padded batches `({"tokens": string (batch, steps)}, {task: int32 (batch,
steps)})`: tokens padded with `""` (which `keras.layers.StringLookup(mask_token="")` maps to the padding id and
masks), tags as ids in the task's tag vocabulary, `-1` where missing or padded.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

TOKENS = "tokens"
PAD = ""
MISSING = -1


def check_sentences(sentences: Sequence[Mapping], columns: Sequence[str] = ()) -> list[dict]:
    """Checks the format: token lists of strings, each column one tag (or None) per token.

    Raises:
        ValueError: naming the sentence and column, echoing what was received.
    """
    checked = []
    for index, sentence in enumerate(sentences):
        tokens = sentence.get(TOKENS) if isinstance(sentence, Mapping) else None
        if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError(
                f"Sentence {index}: expected a dict with `tokens`, a list of non-empty strings. "
                f"Received: {str(sentence)[:200]}"
            )
        for column in columns:
            tags = sentence.get(column)
            if tags is not None and len(tags) != len(tokens):
                raise ValueError(
                    f"Sentence {index}, column {column!r}: expected {len(tokens)} tags (one per token). "
                    f"Received: {len(tags)} tags"
                )
        checked.append(dict(sentence))
    return checked


def mix_corpora(corpora: Sequence[Sequence[Mapping]],
                columns: Sequence[Mapping[str, str] | None] | None = None) -> list[dict]:
    """One corpus from several annotated for different layers (e.g. one for POS and chunks, one for entities).

    Every sentence keeps the tags its corpus has; the columns only other corpora have are missing for the whole
    sentence (`None`), and tags missing inside a sentence (`None`) stay missing, so a task's loss reads each sentence's
    labels where they exist: a softmax task skips the missing tokens, a CRF task (`kmtl.losses.CRFLoss`) sums over
    their tags. Batch the result with `text_dataset(..., shuffle=True)` and the corpora mix in every batch.

    Args:
        corpora: lists of sentences in kmtl's format.
        columns: per corpus, `None` (its columns as they are) or a dict `{column of the mix: column of that corpus}`
            that renames columns and keeps only those (e.g. `{"pos": "upos"}` for a CoNLL-U corpus beside a
            CoNLL-2000 one).

    Returns:
        The sentences of every corpus, in order, each with `tokens` and every column of the mix.

    Raises:
        ValueError: naming the corpus, and the sentence or column, that does not fit.

    Example:

    >>> mixed = mix_corpora([[{"tokens": ["a"], "pos": ["DET"]}], [{"tokens": ["Ada"], "ner": ["B-PER"]}]])
    >>> mixed[1]
    {'tokens': ['Ada'], 'pos': None, 'ner': ['B-PER']}
    """
    corpora = list(corpora)
    columns = [None] * len(corpora) if columns is None else list(columns)
    if len(columns) != len(corpora):
        raise ValueError(f"Invalid value for `columns`. Expected one entry (dict or None) per corpus, "
                         f"{len(corpora)} in all. Received: {len(columns)} entries")
    renamed = []
    for index, (corpus, names) in enumerate(zip(corpora, columns)):
        present = list(dict.fromkeys(c for s in corpus if isinstance(s, Mapping) for c in s if c != TOKENS))
        names = {c: c for c in present} if names is None else dict(names)
        absent = sorted(source for source in names.values() if corpus and source not in present)
        if absent:
            raise ValueError(f"Corpus {index}: columns {absent} are in none of its sentences. Expected some of "
                             f"{present}. Received: columns={names}")
        try:
            checked = check_sentences(corpus, list(names.values()))
        except ValueError as error:
            raise ValueError(f"Corpus {index}: {error}") from None
        renamed.append([{TOKENS: list(s[TOKENS]), **{mixed: s.get(source) for mixed, source in names.items()}}
                        for s in checked])
    every = list(dict.fromkeys(c for corpus in renamed for s in corpus for c in s if c != TOKENS))
    return [{TOKENS: s[TOKENS], **{c: s.get(c) for c in every}} for corpus in renamed for s in corpus]


def tag_vocabulary(sentences: Sequence[Mapping], column: str) -> list[str]:
    """The sorted tags of `column` over `sentences` (missing ones left out)."""
    tags = {tag for s in sentences for tag in (s.get(column) or ()) if tag is not None}
    if not tags:
        raise ValueError(f"Column {column!r} has no tags in these sentences. Received: {len(sentences)} sentences")
    return sorted(tags)


def token_vocabulary(sentences: Sequence[Mapping], min_count: int = 1, max_size: int | None = None) -> list[str]:
    """Tokens seen at least `min_count` times, most frequent first (ties alphabetical), at most `max_size`."""
    counts: dict[str, int] = {}
    for sentence in sentences:
        for token in sentence[TOKENS]:
            counts[token] = counts.get(token, 0) + 1
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return ranked[:max_size] if max_size is not None else ranked


def character_vocabulary(tokens: Sequence[str], max_size: int | None = None) -> list[str]:
    """The characters of `tokens` (e.g. a token vocabulary), most frequent first (ties in code-point order), at
    most `max_size`: the vocabulary of `kmtl.layers.CharacterCNN`."""
    counts: dict[str, int] = {}
    for token in tokens:
        for character in token:
            counts[character] = counts.get(character, 0) + 1
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    return ranked[:max_size] if max_size is not None else ranked


def split_sentences(sentences: Sequence, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> tuple[list, list, list]:
    """Deterministic train/val/test split: a permutation by `np.random.default_rng(seed)`, cut by `fractions`."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"Invalid value for `fractions`. Expected 3 numbers >= 0 summing to 1. "
                         f"Received: fractions={fractions}")
    order = np.random.default_rng(seed).permutation(len(sentences))
    cut_1 = int(round(fractions[0] * len(sentences)))
    cut_2 = cut_1 + int(round(fractions[1] * len(sentences)))
    pick = lambda ids: [sentences[i] for i in ids]  # noqa: E731
    return pick(order[:cut_1]), pick(order[cut_1:cut_2]), pick(order[cut_2:])


def encode(sentences: Sequence[Mapping], vocabularies: Mapping[str, Sequence[str]], max_length: int | None = None):
    """Padded arrays: tokens `(n, steps)` of str (`""` padding) and `{column: int32 (n, steps)}` (-1 missing).

    Args:
        sentences: corpus in kmtl's format.
        vocabularies: dict `{column: tags}`: the columns to encode and their tag lists (ids are positions). A tag
            outside its vocabulary is refused.
        max_length: int. Longer sentences are cut; default: the longest sentence.
    """
    length = max([len(s[TOKENS]) for s in sentences] + [1])
    length = min(length, max_length) if max_length else length
    tokens = np.full((len(sentences), length), PAD, dtype=object)
    labels = {column: np.full((len(sentences), length), MISSING, np.int32) for column in vocabularies}
    ids = {column: {tag: i for i, tag in enumerate(tags)} for column, tags in vocabularies.items()}
    for row, sentence in enumerate(sentences):
        words = sentence[TOKENS][:length]
        tokens[row, : len(words)] = words
        for column, lookup in ids.items():
            for step, tag in enumerate((sentence.get(column) or ())[:length]):
                if tag is None:
                    continue
                if tag not in lookup:
                    raise ValueError(f"Sentence {row}, column {column!r}: tag {tag!r} is not in the tag vocabulary "
                                     f"{list(lookup)[:20]}. Received: tag={tag!r}")
                labels[column][row, step] = lookup[tag]
    return tokens.astype(str), labels


def text_dataset(sentences, vocabularies, batch_size: int = 32, *, shuffle: bool = False, seed: int = 0,
                 max_length: int | None = None):
    """A `tf.data.Dataset` of padded batches `({"tokens": (batch, steps) str}, {column: (batch, steps) int32})`.

    Each batch is padded to its own longest sentence; with `shuffle`, sentences are reshuffled every epoch (seeded).
    """
    import tensorflow as tf

    tokens, labels = encode(sentences, vocabularies, max_length)
    lengths = (tokens != PAD).sum(axis=1)
    dataset = tf.data.Dataset.from_tensor_slices(({TOKENS: tokens}, labels, lengths))
    if shuffle:
        dataset = dataset.shuffle(len(tokens), seed=seed, reshuffle_each_iteration=True)

    def trim(x, y, length):
        longest = tf.maximum(tf.reduce_max(length), 1)
        return {TOKENS: x[TOKENS][:, :longest]}, {k: v[:, :longest] for k, v in y.items()}

    return dataset.batch(batch_size).map(trim).prefetch(2)
