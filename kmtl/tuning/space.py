"""Declarative search spaces: plain dicts of ranges and choices, sampled through a `keras_tuner.HyperParameters`.

A search space maps a hyper-parameter name to one entry:

- a list `[a, b, ...]`: a choice (`hp.Choice`); the first value is the default. Values that are not int, float,
  str or bool (tuples of layer widths, None) are offered to keras-tuner as their `repr` strings and decoded back,
  so `"head_units": [(32,), (64, 32)]` works;
- a dict `{"min": a, "max": b}` with optional `"step"`, `"sampling"` (`"linear"`, `"log"`, `"reverse_log"`) and
  `"default"`: a range, `hp.Int` when `min`, `max` (and `step`) are ints, else `hp.Float`;
- a dict `{"values": [...]}` with optional `"default"`: a choice with an explicit default;
- anything else (a number, a string, a tuple): a fixed value (`hp.Fixed`), recorded with the trial.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping

_RANGE_KEYS = {"min", "max", "step", "sampling", "default"}
_CHOICE_KEYS = {"values", "default"}
_SAMPLINGS = ("linear", "log", "reverse_log")


def _is_scalar(value: Any) -> bool:
    """Whether keras-tuner stores `value` as is (it takes int, float, str and bool)."""
    return type(value) in (int, float, str, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _bad(name: str, spec: Any, expected: str) -> ValueError:
    return ValueError(f"Invalid search-space entry `{name}`. Expected {expected}. Received: {name}={spec!r}")


def _choices(spec: Any):
    """The list of choices of a choice entry (a list, or a dict with "values"); None for other entries."""
    if isinstance(spec, list):
        return spec
    if isinstance(spec, Mapping) and "values" in spec:
        return spec["values"]
    return None


def _encoding(name: str, values) -> dict:
    """`{what keras-tuner sees: the value}` for a choice; identity when every value is a plain scalar."""
    values = list(values)
    if not values:
        raise _bad(name, values, "a non-empty list of choices")
    types = {type(v) for v in values}
    # keras-tuner takes choices of one type among int, float, str and bool; anything else goes as repr strings.
    keys = values if len(types) == 1 and types <= {int, float, str, bool} else [repr(v) for v in values]
    if len(set(keys)) != len(keys):
        raise _bad(name, values, "distinct choices")
    return dict(zip(keys, values))


def check_entry(name: str, spec: Any) -> None:
    """Raises a ValueError naming the entry when `spec` is not a valid search-space entry."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"Invalid search-space name. Expected a non-empty str. Received: {name!r}")
    if isinstance(spec, list):
        _encoding(name, spec)
        return
    if not isinstance(spec, Mapping):
        return  # a fixed value
    keys = set(spec)
    if "values" in keys:
        if keys - _CHOICE_KEYS or not isinstance(spec["values"], (list, tuple)):
            raise _bad(name, spec, 'a dict with "values" (a list) and optionally "default"')
        encoding = _encoding(name, spec["values"])
        if "default" in spec and spec["default"] not in encoding.values():
            raise _bad(name, spec, 'a "default" that is one of the "values"')
        return
    if not {"min", "max"} <= keys or keys - _RANGE_KEYS:
        raise _bad(name, spec, 'a list of choices, {"values": [...]}, or {"min", "max"[, "step", "sampling", '
                               '"default"]}')
    low, high = spec["min"], spec["max"]
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise _bad(name, spec, '"min" < "max", both numbers')
    sampling = spec.get("sampling", "linear")
    if sampling not in _SAMPLINGS:
        raise _bad(name, spec, f'"sampling" in {_SAMPLINGS}')
    if sampling != "linear" and low <= 0:
        raise _bad(name, spec, f'"min" > 0 with sampling={sampling!r}')
    step = spec.get("step")
    if step is not None and (not isinstance(step, numbers.Real) or isinstance(step, bool) or step <= 0):
        raise _bad(name, spec, 'a positive "step"')
    default = spec.get("default")
    if default is not None and not low <= default <= high:
        raise _bad(name, spec, 'a "default" between "min" and "max"')


def check_space(space: Mapping[str, Any], argument: str = "search_space") -> dict:
    """Checks every entry of a search space; returns it as a new dict."""
    if not isinstance(space, Mapping):
        raise ValueError(f"Invalid value for `{argument}`. Expected a dict. Received: {argument}={space!r}")
    for name, spec in space.items():
        check_entry(name, spec)
    return dict(space)


def sample(hp, name: str, spec: Any):
    """Declares `name` in `hp` (a `keras_tuner.HyperParameters`) and returns its current value, decoded.

    Args:
        hp: `keras_tuner.HyperParameters`.
        name: str. Hyper-parameter name.
        spec: a search-space entry (see the module docstring).

    Returns:
        The value of this trial: a choice as written in `spec` (tuples stay tuples), a range as int or float.
    """
    values = _choices(spec)
    if values is not None:
        encoding = _encoding(name, values)
        default = None
        if isinstance(spec, Mapping) and "default" in spec:
            default = next(k for k, v in encoding.items() if v == spec["default"])
        key = hp.Choice(name, list(encoding), default=default)
        return encoding[key]
    if isinstance(spec, Mapping):
        low, high, step = spec["min"], spec["max"], spec.get("step")
        sampling = spec.get("sampling", "linear")
        default = spec.get("default")
        if _is_int(low) and _is_int(high) and (step is None or _is_int(step)) and (default is None or _is_int(default)):
            return hp.Int(name, int(low), int(high), step=step, sampling=sampling, default=default)
        return hp.Float(name, float(low), float(high), step=step, sampling=sampling, default=default)
    if _is_scalar(spec):
        return hp.Fixed(name, spec)
    hp.Fixed(name, repr(spec))
    return spec


def sample_space(hp, space: Mapping[str, Any]) -> dict:
    """Samples every entry of `space`; returns `{name: value}`."""
    return {name: sample(hp, name, spec) for name, spec in space.items()}


def decode(space: Mapping[str, Any], values: Mapping[str, Any]) -> dict:
    """Turns a trial's recorded values (e.g. `best_hps.values`) back into the values `space` describes."""
    out = {}
    for name, value in values.items():
        spec = space.get(name)
        if _choices(spec) is not None:
            out[name] = _encoding(name, _choices(spec)).get(value, value)
        elif spec is not None and not isinstance(spec, Mapping) and not _is_scalar(spec):
            out[name] = spec
        else:
            out[name] = value
    return out
