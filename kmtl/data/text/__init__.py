"""Tagged text: one sentence format, loaders of CoNLL files and packaged corpora, a synthetic generator.

A sentence is `{"tokens": [str], <column>: [tag or None]}`; `text_dataset` makes padded batches
`({"tokens": string (batch, steps), padded with ""}, {column: int32 (batch, steps), -1 missing})`; `mix_corpora`
joins corpora annotated for different layers (each sentence keeps its own columns, the others are missing).
"""

from kmtl.data.text.conll import load_conll2000, load_conll2003, load_conllu, read_conll
from kmtl.data.text.corpus import (
    character_vocabulary,
    check_sentences,
    encode,
    mix_corpora,
    split_sentences,
    tag_vocabulary,
    text_dataset,
    token_vocabulary,
)
from kmtl.data.text.packages import load_hironsan, load_turkish_treebanks
from kmtl.data.text.synthetic import CHUNK_TAGS, NER_TAGS, POS_TAGS, generate_tagged_sentences

__all__ = [
    "CHUNK_TAGS",
    "NER_TAGS",
    "POS_TAGS",
    "character_vocabulary",
    "check_sentences",
    "encode",
    "generate_tagged_sentences",
    "load_conll2000",
    "load_conll2003",
    "load_conllu",
    "load_hironsan",
    "load_turkish_treebanks",
    "mix_corpora",
    "read_conll",
    "split_sentences",
    "tag_vocabulary",
    "text_dataset",
    "token_vocabulary",
]
