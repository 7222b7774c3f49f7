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
SOURCE_HELP = ("synthetic (default), turkish-treebank, hironsan, conll2000:PATH, conll2003:PATH, conllu:PATH; "
               "A+B+... mixes sources")
# Tag of a token without the feature (Turkish `Case`): a class of its own, not a missing label.
NO_FEATURE = "_"


def parse_source(source: str) -> tuple[str, str | None]:
    """`"conll2000:PATH"` -> `("conll2000", PATH)`; `"synthetic"` -> `("synthetic", None)`."""
    name, _, path = str(source).partition(":")
    needs_path = name in ("conll2000", "conll2003", "conllu")
    if name not in SOURCES or needs_path != bool(path):
        raise ValueError(f"Invalid value for `source`. Expected one of {SOURCE_HELP}. Received: source={source!r}")
    return name, path or None


def parts_of(source: str) -> list[str]:
    """The sources a mix `"A+B"` joins (each checked); a single source is a mix of one."""
    parts = str(source).split("+")
    for part in parts:
        parse_source(part)
    return parts


def spec_of(source: str) -> tuple:
    """The tasks of a source or mix, as `SOURCES` entries; a task two sources share keeps the first's entry."""
    spec = {}
    for part in parts_of(source):
        for entry in SOURCES[parse_source(part)[0]]:
            spec.setdefault(entry[0], entry)
    return tuple(spec.values())


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
    """One per-token multiclass task per column of the source; with `crf`, the tasks of `crf_tasks` get a CRF
    (`loss=CRFLoss()`)."""
    with_crf = crf_tasks(source) if crf else ()
    tasks = []
    for task_name, *_ in spec_of(source):
        if names is not None and task_name not in names:
            continue
        tags = vocabularies[task_name]
        loss = kmtl.losses.CRFLoss() if task_name in with_crf else None
        tasks.append(kmtl.Task(task_name, "multiclass", num_classes=max(len(tags), 2), per_step=True,
                               label_names=(list(tags) + ["<none>"])[: max(len(tags), 2)], loss=loss))
    return tasks


def crf_tasks(source: str) -> set:
    """The tasks `crf=True` gives a CRF: each source's BIO span tasks, or all its tasks if it has none."""
    chosen = set()
    for part in parts_of(source):
        spec = SOURCES[parse_source(part)[0]]
        chosen |= {name for name, *_, span in spec if span or not any(entry[-1] for entry in spec)}
    return chosen


def levels_of(source: str) -> dict:
    return {task_name: level for task_name, _, level, _ in spec_of(source)}


def span_tasks(source: str) -> list:
    return [task_name for task_name, _, _, span in spec_of(source) if span]


def read_splits(source: str, seed: int = 0, num_sentences: int = 600, tasks: Sequence[str] | None = None):
    """`(train, val, test, everything)` in kmtl's sentence format, columns renamed to task names.

    A mix `"A+B"` splits each source its own way (see `split`) and joins the parts with `text.mix_corpora`: every
    sentence keeps its source's tasks, the others' are missing for the whole sentence. Sources without any of
    `tasks` are left out.
    """
    parts, columns = [], []
    for part in parts_of(source):
        kept = {task_name: column for task_name, column, *_ in SOURCES[parse_source(part)[0]]
                if tasks is None or task_name in tasks}
        if kept:
            sentences = text.check_sentences(read_sentences(part, num_sentences, seed))
            parts.append([*split(part, sentences, seed), sentences])
            columns.append(kept)
    if not parts:
        raise ValueError(f"Invalid value for `tasks`. Expected some of {[s[0] for s in spec_of(source)]}. "
                         f"Received: tasks={tasks}")
    return tuple(text.mix_corpora([p[i] for p in parts], columns) for i in range(4))


def load_data(batch_size: int = 32, seed: int = 0, tasks: Sequence[str] | None = None, *, source: str = "synthetic",
              num_sentences: int = 600, crf: bool = False, max_vocabulary: int = 20000) -> RecipeData:
    """Loads a source or a mix `"A+B"` (see `read_splits`), builds the vocabularies and batches the splits.

    Returns:
        `RecipeData` with `model_settings` `{"tasks", "vocabulary", "levels"}`: the tasks (tag vocabularies as
        label names), the training split's token vocabulary and each task's level.
    """
    *renamed, everything = read_splits(source, seed, num_sentences, tasks)
    # Tag sets come from the whole corpus, so a tag seen only in the test split still has an id.
    kept = [task_name for task_name, *_ in spec_of(source) if tasks is None or task_name in tasks]
    vocabularies = {task_name: text.tag_vocabulary(everything, task_name) for task_name in kept}
    task_list = make_tasks(source, vocabularies, crf, names=kept)
    vocabulary = text.token_vocabulary(renamed[0], max_size=max_vocabulary)
    datasets = [text.text_dataset(part, vocabularies, batch_size, shuffle=(i == 0), seed=seed)
                for i, part in enumerate(renamed)]
    levels = {name: level for name, level in levels_of(source).items() if name in vocabularies}
    return RecipeData(*datasets, tasks=task_list,
                      model_settings={"tasks": task_list, "vocabulary": vocabulary, "levels": levels})


def test_sentences(source: str, seed: int = 0, num_sentences: int = 600) -> tuple[list, list, list]:
    """The train, val and test splits in kmtl's sentence format, columns renamed to task names (for seqeval and
    baselines)."""
    return read_splits(source, seed, num_sentences)[:3]
