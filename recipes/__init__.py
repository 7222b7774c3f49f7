"""Ready-made multi-task recipes, installed as `kmtl.recipes`: one declared `kmtl.Recipe` per domain.

Each recipe module declares `RECIPE`, a `kmtl.Recipe` (tasks, `build_model`, `compile_model`, `load_data`,
defaults, quick settings, search space). This package registers them by name with their descriptions, so
`kmtl recipes` lists them without importing TensorFlow; `get(name)` imports one.

Example:

>>> sorted(RECIPES)  # doctest: +NORMALIZE_WHITESPACE
['clinical-timeseries', 'domain-adversarial', 'facial-attributes', 'forecasting', 'mixed-effects',
 'nlp-tagging', 'segmentation-classification']
"""

from __future__ import annotations

from kmtl.recipe import Recipe, RecipeEntry, get_recipe, register_recipe

_ENTRIES = (
    RecipeEntry(
        "facial-attributes",
        "CNN with multi-depth feature fusion for 8 face tasks (binary, multiclass, regression, landmarks).",
        "kmtl.recipes.facial_attributes",
    ),
    RecipeEntry(
        "clinical-timeseries",
        "Channel-wise or plain LSTM for the MIMIC-III benchmark's 4 ICU tasks (or PBC follow-ups), per hour.",
        "kmtl.recipes.clinical_timeseries",
    ),
    RecipeEntry(
        "segmentation-classification",
        "U-Net with a classifier on its bottleneck: lesion masks (partly annotated) and lesion class.",
        "kmtl.recipes.segmentation_classification",
    ),
    RecipeEntry(
        "nlp-tagging",
        "Stacked BiLSTM tagger with tasks at their levels (POS low, chunks/NER or syntax high), optional CRF.",
        "kmtl.recipes.nlp_tagging",
    ),
    RecipeEntry(
        "domain-adversarial",
        "Main task on a labelled source domain, a domain classifier behind scheduled gradient reversal (DANN).",
        "kmtl.recipes.domain_adversarial",
    ),
    RecipeEntry(
        "mixed-effects",
        "Random intercepts and slopes per subject (sleep study), checked against statsmodels' MixedLM.",
        "kmtl.recipes.mixed_effects",
    ),
    RecipeEntry(
        "forecasting",
        "Split layers forecast related quarterly series 1-4 quarters ahead (US macro data), rolling origin.",
        "kmtl.recipes.forecasting",
    ),
)
for _entry in _ENTRIES:
    register_recipe(_entry)

# Name -> `RecipeEntry` (name, description, module) of the recipes shipped here.
RECIPES = {entry.name: entry for entry in sorted(_ENTRIES, key=lambda entry: entry.name)}


def get(name: str) -> Recipe:
    """The recipe called `name` (as listed by `kmtl recipes`), importing its module."""
    return get_recipe(name)


__all__ = ["RECIPES", "get"]
