"""The recipe's data sources: which corpus, which columns become which tasks at which level, and the splits."""

from __future__ import annotations

from typing import Sequence

import kmtl
from kmtl.data import text
from kmtl.recipe import RecipeData

# Source name -> (columns as (task name, column, level, BIO span task?)).
SOURCES = {
    "synthetic": (("pos", "pos", 1, False), ("chunk", "chunk", 2, True), ("ner", "ner", 3, True)),
    "conll2000": (("pos", "pos", 1, False), ("chunk", "chunk", 2, True)),
    "conll2003": (("pos", "pos", 1, False), ("chunk", "chunk", 2, True), ("ner", "ner", 3, True)),
    "conllu": (("upos", "upos", 1, False), ("xpos", "xpos", 2, False), ("deprel", "deprel", 3, False)),
    "turkish-treebank": (("upos", "upos", 1, False), ("xpos", "xpos", 2, False), ("case", "feats:Case", 2, False),
                         ("deprel", "deprel", 3, False)),
    "hironsan": (("pos", "pos", 1, False), ("ner", "ner", 2, True)),
}
SOURCE_HELP = "synthetic (default), turkish-treebank, hironsan, conll2000:PATH, conll2003:PATH, conllu:PATH"
# Tag of a token without the feature (Turkish `Case`): a class of its own, not a missing label.
NO_FEATURE = "_"


def parse_source(source: str) -> tuple[str, str | None]:
    """`"conll2000:PATH"` -> `("conll2000", PATH)`; `"synthetic"` -> `("synthetic", None)`."""
    name, _, path = str(source).partition(":")
    needs_path = name in ("conll2000", "conll2003", "conllu")
    if name not in SOURCES or needs_path != bool(path):
        raise ValueError(f"Invalid value for `source`. Expected one of {SOURCE_HELP}. Received: source={source!r}")
    return name, path or None


def read_sentences(source: str, num_sentences: int, seed: int) -> list[dict]:
    name, path = parse_source(source)
    if name == "synthetic":
        return text.generate_tagged_sentences(num_sentences, seed=seed)
    if name == "conll2000":
        return text.load_conll2000(path)
    if name == "conll2003":
        return text.load_conll2003(path)
    if name == "conllu":
        return text.load_conllu(path)
    if name == "hironsan":
        return text.load_hironsan()
    sentences = text.load_turkish_treebanks()
    for sentence in sentences:
        sentence["feats:Case"] = [NO_FEATURE if tag is None else tag for tag in sentence["feats:Case"]]
    return sentences


def split(source: str, sentences: list, seed: int) -> tuple[list, list, list]:
    """The documented splits: Hironsan keeps its package's 90/10 train/test cut (the last tenth of train for
    validation); every other source is permuted with `numpy.random.default_rng(0)` and cut 80/10/10, the same
    split whatever the run's seed (seeds vary the models, not the test set)."""
    if parse_source(source)[0] == "hironsan":
        cut = int(len(sentences) * 0.9)
        val = int(cut * 0.9)
        return sentences[:val], sentences[val:cut], sentences[cut:]
    return text.split_sentences(sentences, (0.8, 0.1, 0.1), seed=0)


def make_tasks(source: str, vocabularies: dict, crf: bool = False, names: Sequence[str] | None = None) -> list:
    """One per-token multiclass task per column of the source; with `crf`, BIO tasks (or, without any, every
    task) get a CRF (`loss=CRFLoss()`)."""
    spec = SOURCES[parse_source(source)[0]]
    any_span = any(span for *_, span in spec)
    tasks = []
    for task_name, _, _, span in spec:
        if names is not None and task_name not in names:
            continue
        tags = vocabularies[task_name]
        use_crf = crf and (span or not any_span)
        loss = kmtl.losses.CRFLoss() if use_crf else None
        tasks.append(kmtl.Task(task_name, "multiclass", num_classes=max(len(tags), 2), per_step=True,
                               label_names=(list(tags) + ["<none>"])[: max(len(tags), 2)], loss=loss))
    return tasks


def levels_of(source: str) -> dict:
    return {task_name: level for task_name, _, level, _ in SOURCES[parse_source(source)[0]]}


def span_tasks(source: str) -> list:
    return [task_name for task_name, _, _, span in SOURCES[parse_source(source)[0]] if span]


def load_data(batch_size: int = 32, seed: int = 0, tasks: Sequence[str] | None = None, *, source: str = "synthetic",
              num_sentences: int = 600, crf: bool = False, max_vocabulary: int = 20000) -> RecipeData:
    """Loads a source, splits it (see `split`), builds the vocabularies on the training split and batches it.

    Returns:
        `RecipeData` with `model_settings` `{"tasks", "vocabulary", "levels"}`: the tasks (tag vocabularies as
        label names), the training split's token vocabulary and each task's level.
    """
    sentences = text.check_sentences(read_sentences(source, num_sentences, seed))
    train, val, test = split(source, sentences, seed)
    spec = SOURCES[parse_source(source)[0]]
    kept = [(task_name, column) for task_name, column, _, _ in spec if tasks is None or task_name in tasks]
    if not kept:
        raise ValueError(f"Invalid value for `tasks`. Expected some of {[s[0] for s in spec]}. Received: tasks={tasks}")
    renamed = [_rename(s, kept) for s in (train, val, test)]
    # Tag sets come from the whole corpus, so a tag seen only in the test split still has an id.
    everything = _rename(sentences, kept)
    vocabularies = {task_name: text.tag_vocabulary(everything, task_name) for task_name, _ in kept}
    task_list = make_tasks(source, vocabularies, crf, names=[n for n, _ in kept])
    vocabulary = text.token_vocabulary(renamed[0], max_size=max_vocabulary)
    datasets = [text.text_dataset(part, vocabularies, batch_size, shuffle=(i == 0), seed=seed)
                for i, part in enumerate(renamed)]
    levels = {name: level for name, level in levels_of(source).items() if name in vocabularies}
    return RecipeData(*datasets, tasks=task_list,
                      model_settings={"tasks": task_list, "vocabulary": vocabulary, "levels": levels})


def _rename(sentences, kept):
    return [{"tokens": s["tokens"], **{task_name: s.get(column) for task_name, column in kept}} for s in sentences]


def test_sentences(source: str, seed: int = 0, num_sentences: int = 600) -> list:
    """The test split in kmtl's sentence format, columns renamed to task names (for seqeval and baselines)."""
    sentences = text.check_sentences(read_sentences(source, num_sentences, seed))
    spec = SOURCES[parse_source(source)[0]]
    kept = [(task_name, column) for task_name, column, _, _ in spec]
    return [_rename(part, kept) for part in split(source, sentences, seed)]
