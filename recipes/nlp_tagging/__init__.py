"""NLP tagging hierarchies: POS low, chunks and entities (or morphology and dependency relations) higher up.

A stacked BiLSTM over word embeddings reads each task out at its own level (Søgaard & Goldberg 2016), with shortcut
connections from the embeddings to every level and label embeddings of the lower tasks' predicted tag
distributions fed upward (Hashimoto et al. 2017); `layout="flat"` reads every task at the top level instead.
`crf=True` gives the span tasks (or, for sources without any, every task) a linear-chain CRF. The model takes
tokens as strings `(batch, steps)` padded with `""`: the vocabulary is a `StringLookup` inside the model, saved
and exported with it.

Sources: the embedded synthetic grammar (default), `turkish-treebank` and `hironsan` (packages from PyPI, the
`corpora` extra), or CoNLL files (`conll2000:PATH`, `conll2003:PATH`, `conllu:PATH`); `A+B` mixes sources annotated
for different layers (each sentence keeps its source's tasks; the others are missing for it, and a CRF task sums
over tokens missing inside a labelled sentence). See `docs/nlp_tagging.md`.

Example:

>>> from kmtl.recipes import nlp_tagging as nt
>>> data = nt.load_data(num_sentences=40, batch_size=8)  # doctest: +SKIP
>>> model = nt.compile_model(nt.build_model(**data.model_settings))  # doctest: +SKIP
>>> model.fit(data.train, validation_data=data.val, epochs=1)  # doctest: +SKIP
>>> nt.tagging_scores(model, data.test)  # doctest: +SKIP

Reference:
    Søgaard & Goldberg (2016). Deep multi-task learning with low level tasks supervised at lower layers. ACL.
    Hashimoto, Xiong, Tsuruoka & Socher (2017). A Joint Many-Task Model. EMNLP.
    Lample, Ballesteros, Subramanian, Kawakami & Dyer (2016). Neural Architectures for Named Entity Recognition.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras

import kmtl
from kmtl.data import text
from kmtl.recipe import Recipe
from kmtl.recipes.nlp_tagging import _data
from kmtl.recipes.nlp_tagging._baseline import crfsuite_baseline
from kmtl.recipes.nlp_tagging._data import SOURCE_HELP, load_data, test_sentences
from kmtl.recipes.nlp_tagging._metrics import format_scores, predict_tags, tag_scores

NAME = "nlp-tagging"
DESCRIPTION = "Stacked BiLSTM tagger with tasks at their levels (POS low, chunks/NER or syntax high), optional CRF."
LAYOUTS = ("hierarchy", "flat")

MODEL_DEFAULTS = {"layout": "hierarchy", "embedding_dim": 64, "units": 64, "label_embedding_dim": 16,
                  "dropout": 0.2, "char_features": False}
# Character CNN sizes (with `char_features`): character embeddings, filters (the per-token feature size), width.
CHARACTER_CNN = {"max_chars": 24, "embedding_dim": 16, "filters": 32, "kernel_size": 3}
MAX_CHARACTERS = 2000
DEFAULTS = {
    "epochs": 10,
    "batch_size": 32,
    "weighting": "equal",
    "learning_rate": 2e-3,
    "source": "synthetic",
    "num_sentences": 600,
    "crf": False,
    **MODEL_DEFAULTS,
}
QUICK = {"epochs": 1, "num_sentences": 40, "embedding_dim": 8, "units": 8, "label_embedding_dim": 4}
TASKS = _data.make_tasks("synthetic", {"pos": ["-"] * 7, "chunk": ["-"] * 5, "ner": ["-"] * 7})


def build_model(
    layout: str = MODEL_DEFAULTS["layout"],
    *,
    tasks: Sequence[kmtl.Task] | None = None,
    vocabulary: Sequence[str] = (),
    levels: Mapping[str, int] | None = None,
    embedding_dim: int = MODEL_DEFAULTS["embedding_dim"],
    units: int = MODEL_DEFAULTS["units"],
    label_embedding_dim: int = MODEL_DEFAULTS["label_embedding_dim"],
    dropout: float = MODEL_DEFAULTS["dropout"],
    char_features: bool = MODEL_DEFAULTS["char_features"],
) -> kmtl.MultiTaskModel:
    """Builds the tagger (uncompiled): input `tokens` (strings `(batch, steps)`, `""` padding).

    Args:
        layout: `"hierarchy"` (each task at its level, shortcuts, label embeddings of lower tasks) or `"flat"`
            (every task on the top level; same depth and widths).
        tasks: the per-token tasks (from `load_data(...).model_settings`); default: the synthetic source's.
        vocabulary: the training split's tokens; others map to the out-of-vocabulary id.
        levels: dict task -> level (1 = lowest BiLSTM); default: the order of `tasks`.
        embedding_dim, units: sizes of the word embeddings and of each BiLSTM direction.
        label_embedding_dim: size of the lower tasks' label embeddings (hierarchy; 0 disables them).
        dropout: dropout on the embeddings.
        char_features: also read each token's characters (`kmtl.layers.CharacterCNN` over the characters of
            `vocabulary`, sizes `CHARACTER_CNN`), concatenated to its word embedding: words outside the vocabulary
            keep their affixes' evidence. The model still takes string tokens.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"Invalid value for `layout`. Expected one of {LAYOUTS}. Received: layout={layout!r}")
    for field, value in (("embedding_dim", embedding_dim), ("units", units)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid value for `{field}`. Expected a positive int. Received: {field}={value!r}")
    if not isinstance(char_features, bool):
        raise ValueError(f"Invalid value for `char_features`. Expected True or False. "
                         f"Received: char_features={char_features!r}")
    tasks = list(tasks) if tasks is not None else list(TASKS)
    levels = dict(levels) if levels is not None else {t.name: i + 1 for i, t in enumerate(tasks)}
    levels = {t.name: levels[t.name] for t in tasks}
    # Levels used by these tasks only, renumbered 1..L (a single-task model is one BiLSTM deep at most its level).
    used = sorted(set(levels.values()))
    levels = {name: used.index(level) + 1 for name, level in levels.items()}
    depth = max(levels.values())
    if layout == "flat":
        levels = {name: depth for name in levels}

    # === Tokens to vectors ===
    tokens = keras.Input((None,), dtype="string", name="tokens")
    lookup = keras.layers.StringLookup(vocabulary=list(vocabulary) or ["<unk-only>"], mask_token="",
                                       name="token_ids")
    x = keras.layers.Embedding(lookup.vocabulary_size(), embedding_dim, mask_zero=True, name="embeddings")(
        lookup(tokens))
    if char_features:
        characters = text.character_vocabulary(vocabulary, MAX_CHARACTERS) or ["?"]
        char_x = kmtl.layers.CharacterCNN(characters, **CHARACTER_CNN, name="characters")(tokens)
        x = keras.layers.Concatenate(name="word_and_characters")([x, char_x])  # both mask the padding tokens
    if dropout:
        x = keras.layers.Dropout(dropout, name="embeddings_dropout")(x)

    # === Levels and heads ===
    embeddings = {}
    if layout == "hierarchy" and label_embedding_dim:
        embeddings = {name: label_embedding_dim for name, level in levels.items() if level < depth}
    return kmtl.builders.hierarchy(
        {"tokens": tokens}, tasks, levels, units=units, shortcuts=True, label_embeddings=embeddings, input_features=x,
        name=f"nlp_tagging_{layout}",
    )


def compile_model(model: kmtl.MultiTaskModel, weighting="equal", learning_rate: float = 2e-3):
    """Adam with gradient clipping; XLA off (every batch has its own length)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=5.0), weighting=weighting,
                  jit_compile=False)
    return model


def tagging_scores(model: kmtl.MultiTaskModel, dataset, span_tasks: Sequence[str] | None = None) -> dict:
    """Token accuracy per task and, for BIO tasks (default: tags starting with `B-`), span P/R/F1 (seqeval)."""
    gold, predicted = predict_tags(model, dataset)
    if span_tasks is None:
        span_tasks = [t.name for t in model.tasks if any(n.startswith("B-") for n in t.label_names or ())]
    return tag_scores(gold, predicted, span_tasks)


def baseline_scores(source: str = "synthetic", seed: int = 0, num_sentences: int = 600) -> dict:
    """The sklearn-crfsuite baseline's test scores (one feature-based CRF per task, same split)."""
    train, _, test = test_sentences(source, seed, num_sentences)
    names = [name for name, *_ in _data.spec_of(source)]
    gold, predicted = crfsuite_baseline(train, test, names)
    return tag_scores(gold, predicted, _data.span_tasks(source))


def baseline_report(settings: Mapping, seed: int = 0) -> str:
    """The sklearn-crfsuite baseline on the split of a run's `settings` (`source`, `num_sentences`) and data seed,
    as the table `kmtl compare nlp-tagging` prints beside kmtl's scores (the recipe's declared `baselines`)."""
    source, num_sentences = settings.get("source", "synthetic"), settings.get("num_sentences", 600)
    return format_scores(baseline_scores(source, seed, num_sentences),
                         f"Baseline: sklearn-crfsuite, one feature-based CRF per task (test split of {source})")


SEARCH_SPACE = {
    "units": [64, 32, 128],
    "embedding_dim": [64, 32, 128],
    "dropout": {"min": 0.0, "max": 0.5, "step": 0.1, "default": 0.2},
    "learning_rate": {"min": 5e-4, "max": 5e-3, "sampling": "log", "default": 2e-3},
    "weighting": ["equal", "uncertainty"],
    "char_features": [False, True],
}

RECIPE = Recipe(
    name=NAME,
    description=DESCRIPTION,
    tasks=TASKS,
    build_model=build_model,
    compile_model=compile_model,
    load_data=load_data,
    defaults=DEFAULTS,
    quick=QUICK,
    data_settings=("source", "num_sentences", "crf"),
    model_settings=("layout", "embedding_dim", "units", "label_embedding_dim", "dropout", "char_features"),
    derived_settings=("tasks", "vocabulary", "levels"),
    search_space=SEARCH_SPACE,
    sources=SOURCE_HELP,
    baselines=baseline_report,
)

__all__ = [
    "DEFAULTS",
    "DESCRIPTION",
    "LAYOUTS",
    "NAME",
    "QUICK",
    "RECIPE",
    "TASKS",
    "baseline_report",
    "baseline_scores",
    "build_model",
    "compile_model",
    "crfsuite_baseline",
    "format_scores",
    "load_data",
    "tagging_scores",
]
