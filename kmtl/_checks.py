"""Argument checks shared across kmtl: each raises the Keras-style `ValueError` naming the argument.

Messages read `Invalid value for `<name>`. Expected <what>. Received: <name>=<value>`.
"""

from __future__ import annotations

import math
import numbers


def is_number(value) -> bool:
    """Whether `value` is a real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value, *, allow_zero: bool = False, allow_negative: bool = False) -> float:
    """`value` as a float, or a ValueError when it is not a finite number in range (positive by default).

    Anything `float()` accepts counts, except bools (e.g. the string `"0.5"` from a command line).
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    in_range = allow_negative or number > 0 or (allow_zero and number == 0)
    if isinstance(value, bool) or not (math.isfinite(number) and in_range):
        expected = (
            "a finite number" if allow_negative else "a non-negative number" if allow_zero else "a positive number"
        )
        raise ValueError(f"Invalid value for `{name}`. Expected {expected}. Received: {name}={value!r}")
    return number


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={value!r}")
    return int(value)


def check_nonnegative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"Invalid value for `{name}`. Expected an int >= 0. Received: {name}={value!r}")
    return int(value)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"Invalid value for `{name}`. Expected a bool. Received: {name}={value!r}")
    return value


def check_widths(name: str, value, *, allow_empty: bool = True) -> tuple[int, ...]:
    """A sequence of positive ints (layer widths) as a tuple; `allow_empty=False` asks for at least one."""
    widths = None
    if not isinstance(value, (numbers.Number, str, bytes)):
        try:
            widths = tuple(value)
        except TypeError:
            widths = None
    valid = widths is not None and (allow_empty or len(widths) > 0)
    if not valid or not all(isinstance(u, numbers.Integral) and not isinstance(u, bool) and u > 0 for u in widths):
        expected = "a sequence of positive ints" + ("" if allow_empty else " (at least one)")
        raise ValueError(f"Invalid value for `{name}`. Expected {expected}. Received: {name}={value!r}")
    return tuple(int(u) for u in widths)


def check_choice(name: str, value, choices):
    """`value` when it is one of `choices`, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"Invalid value for `{name}`. Expected one of {list(choices)}. Received: {name}={value!r}")
    return value
