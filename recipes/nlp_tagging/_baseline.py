"""The baseline a user would pick instead: a feature-based CRF tagger per task (`sklearn-crfsuite`)."""

from __future__ import annotations


def token_features(tokens, i: int) -> dict:
    """The classic window features of token `i`: the word, its affixes and shape, and its neighbours."""
    word = tokens[i]
    features = {"bias": 1.0, "word.lower": word.lower(), "suffix3": word[-3:], "suffix2": word[-2:],
                "prefix2": word[:2], "is_upper": word.isupper(), "is_title": word.istitle(),
                "is_digit": word.isdigit(), "length": min(len(word), 10)}
    for offset in (-2, -1, 1, 2):
        j = i + offset
        if 0 <= j < len(tokens):
            features[f"{offset}:word.lower"] = tokens[j].lower()
            features[f"{offset}:suffix3"] = tokens[j][-3:]
        else:
            features[f"{offset}:edge"] = True
    return features


def crfsuite_baseline(train, test, task_names, max_iterations: int = 100) -> tuple[dict, dict]:
    """Trains one `sklearn_crfsuite.CRF` per task on `train` and tags `test` (sentences with task columns).

    Sentences whose task tags are partly missing are left out of that task's training (crfsuite needs full
    labels). Returns `(gold, predicted)` tag lists per task, as `_metrics.tag_scores` takes them.
    """
    try:
        import sklearn_crfsuite
    except ImportError as error:
        raise ImportError("The CRF baseline needs `sklearn-crfsuite`: pip install 'kmtl[baselines]'") from error
    gold, predicted = {}, {}
    for task in task_names:
        labelled = [s for s in train if s.get(task) and None not in s[task]]
        model = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=max_iterations)
        model.fit([[token_features(s["tokens"], i) for i in range(len(s["tokens"]))] for s in labelled],
                  [list(s[task]) for s in labelled])
        evaluated = [s for s in test if s.get(task) and None not in s[task]]
        gold[task] = [list(s[task]) for s in evaluated]
        predicted[task] = model.predict([[token_features(s["tokens"], i) for i in range(len(s["tokens"]))]
                                         for s in evaluated])
    return gold, predicted
