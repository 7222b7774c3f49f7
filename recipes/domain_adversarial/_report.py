"""The domain-adversarial report: target and source accuracy, the domain head's accuracy and a fresh domain probe."""

from __future__ import annotations

import numpy as np

from kmtl.recipes.domain_adversarial._data import Domains

# The layer whose output is the shared features (the main head and the domain head read it).
FEATURES = "features"
PROBE_FOLDS = 5
COLUMNS = {
    "target": "target acc",
    "source": "source acc",
    "domain_head": "domain head acc",
    "probe": "domain probe acc",
}


def classes(predicted: np.ndarray) -> np.ndarray:
    """Predicted class ids from a head's outputs: argmax of softmax outputs, binary outputs cut at 0.5."""
    predicted = np.asarray(predicted)
    return predicted.argmax(axis=-1) if predicted.shape[-1] > 1 else (predicted[..., 0] > 0.5).astype("int32")


def shared_features(model, x: np.ndarray) -> np.ndarray:
    """The model's shared features (`FEATURES` layer, frozen: inference mode) for inputs `x`."""
    import keras

    extractor = keras.Model(model.inputs, model.get_layer(FEATURES).output)
    return np.asarray(extractor.predict(x, verbose=0), "float64")


def domain_probe(features_source: np.ndarray, features_target: np.ndarray, seed: int = 0) -> float:
    """Accuracy of a fresh domain classifier on frozen features: scikit-learn's logistic regression (standardised
    features), `PROBE_FOLDS`-fold stratified cross-validation over the examples of both domains.

    With as many source as target examples, chance is 0.5; features that carry no linear trace of the domain
    bring the probe down to it.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([features_source, features_target])
    y = np.concatenate([np.zeros(len(features_source)), np.ones(len(features_target))])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(PROBE_FOLDS, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(probe, x, y, cv=folds)))


def scores(model, part: Domains, main_name: str, seed: int = 0) -> dict:
    """`COLUMNS`' scores of a trained recipe model on a split's arrays (the test split's, in the report)."""
    import keras

    x = np.concatenate([part.x_source, part.x_target])
    n_source = len(part.y_source)
    domains = np.concatenate([np.zeros(n_source), np.ones(len(part.y_target))]).astype("int32")
    # One pass gives both heads' outputs and the shared features.
    outputs = [model.get_layer(name).output for name in (main_name, "domain", FEATURES)]  # heads named after tasks
    extractor = keras.Model(model.inputs, outputs)
    main, domain, features = extractor.predict(x, verbose=0)
    main = classes(main)
    features = np.asarray(features, "float64")
    return {
        "target": float(np.mean(main[n_source:] == part.y_target)),
        "source": float(np.mean(main[:n_source] == part.y_source)),
        "domain_head": float(np.mean(classes(domain) == domains)),
        "probe": domain_probe(features[:n_source], features[n_source:], seed),
    }


def report(results: dict, part: Domains, title: str) -> str:
    """The report as text: a row of `COLUMNS` per model (`results`: label -> `scores(...)`), the majority class's
    accuracy on the target test examples, and what the columns measure."""
    width = max(len(label) for label in results) + 2
    lines = [title, f"{'':{width}s}" + "".join(f"{name:>18s}" for name in COLUMNS.values())]
    for label, values in results.items():
        lines.append(f"{label:{width}s}" + "".join(f"{values[key]:18.3f}" for key in COLUMNS))
    majority = np.bincount(part.y_target).max() / len(part.y_target)
    lines += [
        f"{'majority class':{width}s}{majority:18.3f}",
        f"Test split: {len(part.y_source)} source and {len(part.y_target)} target examples. Domain probe: logistic "
        f"regression on the frozen shared features, {PROBE_FOLDS}-fold cross-validated over them (chance 0.500).",
    ]
    return "\n".join(lines)
