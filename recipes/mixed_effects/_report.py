"""The mixed-effects report: kmtl's fitted fixed effects and variances beside statsmodels' `MixedLM` and the truth."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from kmtl.weighting import Uncertainty
from kmtl.recipes.mixed_effects._data import SPLIT_DAYS, TRUE_VALUES, ClusteredData, features

# The model sees days / DAYS_SCALE (0-1), so its slopes are per DAYS_SCALE days in standardised units.
DAYS_SCALE = 9.0
# The report's rows: estimate name -> label.
ROWS = {
    "intercept": "fixed intercept (ms)",
    "slope": "fixed slope (ms/day)",
    "sd_intercept": "sd of intercepts (ms)",
    "sd_slope": "sd of slopes (ms/day)",
    "correlation": "correlation",
    "residual_sd": "residual sd (ms)",
}


@dataclasses.dataclass
class Fit:
    """Estimates of the reaction-time mixed model (`ROWS` keys, in ms and days) and a predictor of reaction times.

    `predict(data, random=True)` returns the conditional predictions (fixed plus the subject's random effects);
    `random=False`, the fixed effects' (population) predictions.
    """

    values: dict
    fixed: np.ndarray  # (2,): intercept, slope
    effects: np.ndarray  # (groups, 2): each subject's random intercept and slope
    converged: bool = True

    def predict(self, data: ClusteredData, random: bool = True) -> np.ndarray:
        coefficients = self.fixed + (self.effects[data.subject] if random else np.zeros((len(data.days), 2)))
        return coefficients[:, 0] + coefficients[:, 1] * data.days


def estimates(model) -> Fit:
    """The `reaction` task's fixed effects, random-effect covariance and residual sd of a trained recipe model.

    The residual sd comes from the `"uncertainty"` weighting's learned variance (NaN under other weightings).
    """
    task = next(t for t in model.tasks if t.name == "reaction")
    kernel, bias = model.get_layer("reaction_fixed").get_weights()
    layer = model.get_layer("reaction_random")
    to_ms = task.target_scale * np.diag([1.0, 1.0 / DAYS_SCALE])  # standardised, scaled-days -> ms, days
    covariance = to_ms @ layer.prior_covariance()[0] @ to_ms.T
    fixed = np.array([task.target_offset + task.target_scale * bias[0], task.target_scale * kernel[0, 0] / DAYS_SCALE])
    effects = layer.random_effects()[:, 0, :] @ to_ms.T
    residual = float("nan")
    if isinstance(model.weighting, Uncertainty):
        index = [t.name for t in model.tasks].index("reaction")
        log_variance = np.asarray(model.weighting.log_variance.numpy(), "float64")[index]
        residual = task.target_scale * float(np.exp(0.5 * log_variance))
    return Fit(_values(fixed, covariance, residual), fixed, effects)


def fit_mixedlm(data: ClusteredData, reml: bool = False) -> Fit:
    """statsmodels' `MixedLM`: reaction ~ days, random intercept and slope for days by subject, on `data`'s rows.

    Raises:
        ImportError: when statsmodels is not installed.
    """
    try:
        import statsmodels.api as sm
    except ImportError as error:
        raise ImportError('the MixedLM comparison needs statsmodels: pip install "kmtl[mixed]"') from error
    design = np.column_stack([np.ones_like(data.days), data.days])
    with warnings.catch_warnings():  # convergence is reported in the table instead
        warnings.simplefilter("ignore")
        result = sm.MixedLM(data.reaction, design, groups=data.subject, exog_re=design).fit(reml=reml)
    covariance = np.asarray(result.cov_re, "float64")
    effects = np.zeros((len(data.subject_ids), 2))
    for group, values in result.random_effects.items():
        effects[int(group)] = np.asarray(values, "float64")
    fixed = np.asarray(result.fe_params, "float64")
    return Fit(_values(fixed, covariance, float(np.sqrt(result.scale))), fixed, effects, bool(result.converged))


def _values(fixed, covariance, residual) -> dict:
    sd = np.sqrt(np.diag(covariance))
    return {
        "intercept": float(fixed[0]),
        "slope": float(fixed[1]),
        "sd_intercept": float(sd[0]),
        "sd_slope": float(sd[1]),
        "correlation": float(covariance[0, 1] / (sd[0] * sd[1])) if sd.all() else float("nan"),
        "residual_sd": residual,
    }


def report(model, data, weighting: str = "uncertainty", source: str | None = None) -> str:
    """The recipe's report as text: estimates beside `MixedLM` (ML and REML) and, on synthetic data, the truth;
    then the test rows' reaction-time errors of kmtl, `MixedLM` and the trivial predictor.

    Args:
        model: a trained recipe model.
        data: the `MixedEffectsData` it was trained on (`load_data(...)`).
        weighting: the weighting it was compiled with (a note is added unless `"uncertainty"`).
        source: `"synthetic"` adds the true values; None infers it from the subjects' ids.

    Raises:
        ImportError: when statsmodels is not installed.
    """
    train, _, test = data.parts
    synthetic = source == "synthetic" if source is not None else min(train.subject_ids) >= 1000
    columns = {"kmtl": estimates(model), "MixedLM ML": fit_mixedlm(train, reml=False),
               "MixedLM REML": fit_mixedlm(train, reml=True)}
    head = f"{'':24s}" + "".join(f"{name:>14s}" for name in columns) + (f"{'true':>10s}" if synthetic else "")
    low, high = SPLIT_DAYS[0]
    lines = [
        f"Reaction-time mixed model on the training rows ({len(train.subject_ids)} subjects, days {low}-{high}, "
        f"{len(train.reaction)} rows):",
        head,
    ]
    for key, label in ROWS.items():
        line = f"{label:24s}" + "".join(f"{fit.values[key]:14.2f}" for fit in columns.values())
        lines.append(line + (f"{TRUE_VALUES[key]:10.2f}" if synthetic else ""))
    if not all(fit.converged for fit in columns.values()):
        lines.append("(a MixedLM fit did not converge)")
    if weighting != "uncertainty":
        lines.append(f"Note: weighting={weighting!r} fixes the residual variance: kmtl's estimates are not the "
                     "likelihood's (use 'uncertainty').")
    low, high = SPLIT_DAYS[2]
    lines += ["", f"Test reaction times (days {low}-{high}, {len(test.reaction)} rows):",
              f"{'':40s}{'RMSE':>8s}{'MAE':>8s}"]
    predicted = np.asarray(model.predict(features(test), verbose=0)["reaction"], "float64").reshape(-1)
    rows = {
        "kmtl (fixed + subject effects)": predicted,
        "MixedLM ML (fixed + subject BLUPs)": columns["MixedLM ML"].predict(test),
        "MixedLM ML (fixed effects only)": columns["MixedLM ML"].predict(test, random=False),
        "trivial (training mean)": np.full(test.reaction.shape, train.reaction.mean()),
    }
    for label, values in rows.items():
        error = values - test.reaction
        lines.append(f"{label:40s}{np.sqrt(np.mean(error**2)):8.2f}{np.mean(np.abs(error)):8.2f}")
    return "\n".join(lines)
