"""A deterministic generator of tagged sentences: POS, chunks and named entities from a small grammar.

The higher layers depend on the lower ones: chunk tags are read off the phrase structure that the POS tags
reflect, and entity tags need both a proper noun (POS) and its phrase (a proper noun after "in" or "to" is a
place, one after "of" an organisation, any other a person). Some words are ambiguous between noun and verb
("run", "walk", "work"), so even POS needs context.
"""

from __future__ import annotations

import numpy as np

POS_TAGS = ("ADJ", "ADP", "DET", "NOUN", "PROPN", "PUNCT", "VERB")
CHUNK_TAGS = ("B-NP", "B-PP", "B-VP", "I-NP", "O")
NER_TAGS = ("B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O")

_WORDS = {
    "DET": ["the", "a", "every", "this"],
    "ADJ": ["old", "green", "quiet", "large", "small", "bright"],
    "NOUN": ["dog", "city", "report", "river", "run", "walk", "work", "plan", "team", "bridge"],
    "VERB": ["sees", "builds", "run", "walk", "work", "likes", "finds", "visits"],
    "PROPN": ["Ada", "Turing", "Paris", "Kyoto", "Acme", "Nile", "Grace", "Hopper", "Oslo", "Lima"],
}
# Preposition -> the kind of entity a proper noun after it names.
_PREPOSITIONS = {"in": "LOC", "to": "LOC", "of": "ORG", "with": "PER", "near": "LOC"}


def _noun_phrase(rng, entity):
    """Tokens, POS and NER of a noun phrase: a proper-noun run (an entity) or DET ADJ* NOUN."""
    if rng.random() < 0.45:
        count = 1 + int(rng.random() < 0.4)
        words = list(rng.choice(_WORDS["PROPN"], size=count))
        ner = [f"B-{entity}"] + [f"I-{entity}"] * (count - 1)
        return words, ["PROPN"] * count, ner
    words, pos = [str(rng.choice(_WORDS["DET"]))], ["DET"]
    for _ in range(int(rng.integers(0, 3))):
        words.append(str(rng.choice(_WORDS["ADJ"])))
        pos.append("ADJ")
    words.append(str(rng.choice(_WORDS["NOUN"])))
    pos.append("NOUN")
    return words, pos, ["O"] * len(words)


def _sentence(rng) -> dict:
    columns = {"tokens": [], "pos": [], "chunk": [], "ner": []}

    def add(words, pos, ner, chunk):
        columns["tokens"] += [str(w) for w in words]
        columns["pos"] += pos
        columns["ner"] += ner
        columns["chunk"] += [f"B-{chunk}"] + [f"I-{chunk}"] * (len(words) - 1) if chunk else ["O"] * len(words)

    add(*_noun_phrase(rng, "PER"), "NP")
    add([str(rng.choice(_WORDS["VERB"]))], ["VERB"], ["O"], "VP")
    if rng.random() < 0.7:
        add(*_noun_phrase(rng, "PER"), "NP")
    for _ in range(int(rng.integers(0, 3))):
        preposition = str(rng.choice(list(_PREPOSITIONS)))
        add([preposition], ["ADP"], ["O"], "PP")
        add(*_noun_phrase(rng, _PREPOSITIONS[preposition]), "NP")
    add(["."], ["PUNCT"], ["O"], None)
    return columns


def generate_tagged_sentences(num_sentences: int = 200, seed: int = 0) -> list[dict]:
    """`num_sentences` sentences with `tokens`, `pos`, `chunk` (BIO) and `ner` (BIO) columns; same seed, same text.

    Example:

    >>> generate_tagged_sentences(1, seed=0)[0]["tokens"][-1]
    '.'
    """
    if isinstance(num_sentences, bool) or not isinstance(num_sentences, int) or num_sentences < 1:
        raise ValueError(f"Invalid value for `num_sentences`. Expected a positive int. "
                         f"Received: num_sentences={num_sentences!r}")
    rng = np.random.default_rng(seed)
    return [_sentence(rng) for _ in range(num_sentences)]
