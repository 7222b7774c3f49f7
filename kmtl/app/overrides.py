"""`--set KEY=VALUE`: any declared data, model or compile setting of a recipe, from text, checked before data loads.

A setting's type is read from the values the recipe declares for it: its `defaults`, then its `quick` settings,
then the first value of its `search_space` entry, then the default in the signature of the function that takes it
(`num_train` 3000 is an int, `dropout` 0.1 a number, `filters` `(16, 32, 48)` a tuple of ints, `crf` False and
`batch_renorm: bool = True` booleans, `source` "synthetic" text). A setting declared with no
value (None, or not in any of them: e.g. `fold`, `shift`) takes a Python literal (`3`, `0.5`, `True`, `(0, 5)`,
`None`), or else the text as is.
"""

from __future__ import annotations

import ast
import inspect
import math
from typing import Any, Sequence

from kmtl.recipe import Recipe

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_overrides(recipe: Recipe, pairs: Sequence[str]) -> dict:
    """`{key: value}` from `["KEY=VALUE", ...]`, each value parsed to its setting's declared type.

    Args:
        recipe: `kmtl.Recipe`.
        pairs: list of str, `KEY=VALUE` (a later pair of the same key wins).

    Returns:
        dict of settings for `Recipe.settings(**overrides)`.

    Raises:
        ValueError: one line naming the recipe, the key, every valid key with its expected type, and what was
            received: for text without `=`, a key the recipe does not declare, or a value not of the setting's type.

    Example:

    >>> from kmtl.recipe import Recipe
    >>> defaults = {"epochs": 1, "batch_size": 8, "weighting": "equal", "learning_rate": 1e-3, "num_train": 100}
    >>> recipe = Recipe("tiny", "A recipe.", [], None, None, None, defaults=defaults, data_settings=("num_train",),
    ...                 model_settings=("widths",), search_space={"widths": [(8, 16)]})
    >>> parse_overrides(recipe, ["num_train=1000", "widths=4,8,16"])
    {'num_train': 1000, 'widths': (4, 8, 16)}
    """
    types = setting_types(recipe)
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or key not in types:
            problem = f"expected KEY=VALUE, got {pair!r}" if not sep else f"unknown key {key!r}"
            raise ValueError(f"Invalid --set for recipe {recipe.name!r}: {problem}. {_valid_keys(types)}")
        try:
            out[key] = _parse(text.strip(), types[key])
        except ValueError:
            raise ValueError(
                f"Invalid --set for recipe {recipe.name!r}: {key} expects {_describe(types[key])}. "
                f"Received: {key}={text!r}. {_valid_keys(types)}"
            ) from None
    return out


def setting_types(recipe: Recipe) -> dict[str, Any]:
    """`{key: declared value or None}` for every data, model and compile setting of `recipe` (`data_settings`,
    `model_settings`, `compile_settings`; see the module docstring)."""
    defaults, quick = recipe.settings(), recipe.settings(quick=True)
    space = dict(recipe.search_space or {})
    types = {}
    for key in sorted({*recipe.data_settings, *recipe.model_settings, *recipe.compile_settings}):
        candidates = [defaults.get(key), quick.get(key), _space_value(space.get(key)), _signature_default(recipe, key)]
        types[key] = next((c for c in candidates if c is not None), None)
    return types


def _signature_default(recipe: Recipe, key: str):
    """The default of `key` in the signature of the function that takes it (`load_data`, `build_model` or
    `compile_model`), e.g. `batch_renorm: bool = True`; None when it has none."""
    for function in (recipe.load_data, recipe.build_model, recipe.compile_model):
        try:
            parameter = inspect.signature(function).parameters.get(key)
        except (TypeError, ValueError):  # not introspectable
            continue
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    return None


def _space_value(entry):
    """A value of a search-space entry: the first choice, the default, or the lower end of a range."""
    if isinstance(entry, list):
        return entry[0] if entry else None
    if isinstance(entry, dict):
        for name in ("default", "values", "min"):
            if name in entry:
                value = entry[name]
                return (value[0] if value else None) if name == "values" else value
        return None
    return entry


def _parse(text: str, declared):
    if declared is None:  # no declared value: a literal, else the text
        if text.lower() == "none":
            return None
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    if isinstance(declared, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(text)
    if isinstance(declared, int):
        return int(text)
    if isinstance(declared, float):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    if isinstance(declared, (tuple, list)):
        inner = text.strip("()[] ")
        parts = [p.strip() for p in inner.split(",")] if inner else []
        if any(not p for p in parts[:-1]):  # "16,,32"; a trailing comma is a one-tuple's
            raise ValueError(text)
        element = declared[0] if declared else None
        values = tuple(_parse(p, element) for p in parts if p)
        return values if isinstance(declared, tuple) else list(values)
    return text  # text settings (`source`, `model`, `layout`): the recipe checks the value when it loads


def _describe(declared) -> str:
    if declared is None:
        return "a Python literal (3, 0.5, True, (0, 5), None) or text"
    if isinstance(declared, bool):
        return "true or false"
    if isinstance(declared, int):
        return "an integer"
    if isinstance(declared, float):
        return "a number"
    if isinstance(declared, (tuple, list)):
        element = type(declared[0]).__name__ if declared else "value"
        return f"a comma-separated tuple of {element} (like {','.join(str(v) for v in declared)})"
    return "text"


def _short_type(declared) -> str:
    if declared is None:
        return "literal"
    if isinstance(declared, bool):
        return "bool"
    if isinstance(declared, (tuple, list)):
        return f"tuple of {type(declared[0]).__name__}" if declared else "tuple"
    return {int: "int", float: "number"}.get(type(declared), "text")


def _valid_keys(types) -> str:
    return "Valid keys: " + ", ".join(f"{key} ({_short_type(value)})" for key, value in types.items()) + "."
