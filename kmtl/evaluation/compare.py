"""Single-task baselines and Δm (kept at this path; the code lives in `kmtl.evaluation.baselines`).

`compare_recipe` moved to the application layer, `kmtl.app.compare`; this alias warns and is removed in 0.3.
"""

from kmtl.evaluation.baselines import compare_single_task
from kmtl.evaluation.deltas import (
    ComparisonResult,
    delta_m,
    lower_is_better,
    primary_metric,
    relative_improvement,
)

__all__ = [
    "ComparisonResult",
    "compare_single_task",
    "delta_m",
    "lower_is_better",
    "primary_metric",
    "relative_improvement",
]


def __getattr__(name):
    if name == "compare_recipe":
        import warnings

        from kmtl.app.compare import compare_recipe

        warnings.warn(
            "`kmtl.evaluation.compare.compare_recipe` is deprecated; use `kmtl.app.compare.compare_recipe`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return compare_recipe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
