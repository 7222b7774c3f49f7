"""Deterministic synthetic ICU stays in the MIMIC-III benchmark's format, with all five benchmark labels.

Each patient has a comorbidity profile: five latent factors (cardiac, respiratory, metabolic-renal, infection,
neuro-gastrointestinal) and an age; some patients have several stays. Each stay follows a latent severity
trajectory, a random walk whose start and drift depend on the profile. The hourly hazard of death rises with
severity and the hazard of discharge falls with it; some patients discharged in a bad state die later in
hospital. So the same latent state drives:

- the vitals and labs, charted irregularly (vital signs about hourly, GCS and temperature every few hours,
  labs a few times a day, height and weight rarely) in the benchmark's 17 variables and spellings — GCS in the
  CareVue or the MetaVision spellings, chosen per stay — then run through the `Discretizer`;
- in-hospital mortality, decompensation (death within 24 h), the remaining stay and its bucket, exactly as the
  benchmark's scripts derive them from the stay's length and time of death;
- the 25 phenotypes, each driven by one of the factors (and some by peak severity or age).

The tasks therefore share structure, as real ICU tasks do.

Reference:
    Harutyunyan, Khachatrian, Kale, Ver Steeg, Galstyan (2019). Multitask learning and benchmarking with clinical
    time series data. Scientific Data 6, 96.
"""

import numpy as np

from kmtl.data.clinical import benchmark_labels
from kmtl.data.clinical.benchmark_labels import LOS_BUCKETS, PHENOTYPES
from kmtl.data.clinical.discretizer import VARIABLES, Discretizer

__all__ = ["LOS_BUCKETS", "PHENOTYPES", "VARIABLES", "generate_icu_stays", "simulate_icu_events"]

CARDIAC, RESPIRATORY, METABOLIC, INFECTION, NEURO_GI = range(5)
# Per phenotype (in `PHENOTYPES` order): driving factor, its weight, bias, weight of peak severity, of age/10.
_PHENOTYPE_MODEL = np.array(
    [
        (METABOLIC, 1.2, -1.6, 0.5, 0.1), (NEURO_GI, 1.4, -2.8, 0.0, 0.1), (CARDIAC, 1.4, -2.6, 0.3, 0.1),
        (CARDIAC, 1.2, -1.2, 0.2, 0.2), (METABOLIC, 1.3, -2.2, 0.0, 0.2), (RESPIRATORY, 1.4, -2.2, 0.0, 0.2),
        (NEURO_GI, 1.0, -2.0, 0.3, 0.0), (CARDIAC, 1.2, -2.6, 0.0, 0.2), (CARDIAC, 1.4, -1.8, 0.3, 0.2),
        (CARDIAC, 1.3, -1.2, 0.0, 0.3), (METABOLIC, 1.4, -2.4, 0.0, 0.1), (METABOLIC, 1.2, -1.6, 0.0, 0.1),
        (CARDIAC, 0.9, -1.4, 0.0, 0.2), (CARDIAC, 1.0, -0.6, -0.3, 0.2), (METABOLIC, 1.1, -1.2, 0.4, 0.0),
        (NEURO_GI, 1.3, -2.4, 0.3, 0.0), (CARDIAC, 1.2, -2.0, 0.0, 0.2), (NEURO_GI, 1.2, -2.4, 0.2, 0.0),
        (RESPIRATORY, 1.0, -2.4, 0.0, 0.0), (RESPIRATORY, 0.9, -2.8, 0.0, 0.0), (RESPIRATORY, 1.0, -2.6, 0.2, 0.0),
        (INFECTION, 1.2, -1.8, 0.3, 0.0), (RESPIRATORY, 1.3, -2.0, 0.7, 0.0), (INFECTION, 1.5, -2.6, 0.6, 0.0),
        (INFECTION, 1.0, -3.4, 1.0, 0.0),
    ]
)  # fmt: skip
_EYE = {"carevue": ("None", "To Pain", "To Speech", "Spontaneously"),
        "metavision": ("1 No Response", "2 To pain", "3 To speech", "4 Spontaneously")}  # fmt: skip
_MOTOR = {
    "carevue": ("No response", "Abnormal extension", "Abnormal Flexion", "Flex-withdraws", "Localizes Pain",
                "Obeys Commands"),
    "metavision": ("1 No Response", "2 Abnorm extensn", "3 Abnorm flexion", "4 Flex-withdraws", "5 Localizes Pain",
                   "6 Obeys Commands"),
}  # fmt: skip
_VERBAL = {
    "carevue": ("No Response", "Incomprehensible sounds", "Inappropriate Words", "Confused", "Oriented"),
    "metavision": ("1 No Response", "2 Incomp sounds", "3 Inapprop words", "4 Confused", "5 Oriented"),
}  # fmt: skip
_INTUBATED = {"carevue": "No Response-ETT", "metavision": "1.0 ET/Trach"}
_STAYS_PER_PATIENT = ((1, 2, 3), (0.7, 0.2, 0.1))


def generate_icu_stays(
    num_stays: int, seed: int = 0, *, min_hours: float = 12.0, max_hours: float = 120.0, discretizer=None
):
    """Generates discretised synthetic ICU stays labelled for the benchmark's tasks.

    Args:
        num_stays: int. Number of stays (episodes).
        seed: int. Seed of the numpy generator; the same seed gives identical arrays.
        min_hours: float. Shortest stay in hours (>= 5, so that every stay has labelled steps).
        max_hours: float. Longest stay; stays still in the ICU then are discharged alive.
        discretizer: `kmtl.data.clinical.Discretizer` or `None` (hourly bins).

    Returns:
        `SequenceData` with features `(steps_i, 76)` and labels `mortality` `(N,)` (-1 for stays under 48 h),
        `decompensation`, `length_of_stay` (per-step class ids of `LOS_BUCKETS`), `remaining_stay` (per-step
        hours) and `phenotype` `(N, 25)`; `groups` are patient ids, `episode_ids` benchmark-style file names.

    Example:

    >>> data = generate_icu_stays(8, seed=1)
    >>> len(data), data.num_features, data.labels["phenotype"].shape
    (8, 76, (8, 25))

    Reference:
        Harutyunyan, Khachatrian, Kale, Ver Steeg, Galstyan (2019). Multitask learning and benchmarking with
        clinical time series data. Scientific Data 6, 96.
    """
    discretizer = Discretizer() if discretizer is None else discretizer
    stays = simulate_icu_events(num_stays, seed, min_hours=min_hours, max_hours=max_hours)
    features, labels = [], []
    for stay in stays:
        x = discretizer.transform(stay["timeseries"], end_hours=stay["los"])
        samples = benchmark_labels.sample_labels(stay["los"], stay["mortality"], stay["death_hours"], stay["first_event"])
        label = benchmark_labels.step_labels(samples, x.shape[0], discretizer.timestep)
        label["phenotype"] = stay["phenotype"]
        features.append(x)
        labels.append(label)
    return benchmark_labels.to_sequence_data(features, labels, [stay["name"] for stay in stays], discretizer)


def simulate_icu_events(num_stays: int, seed: int = 0, *, min_hours: float = 12.0, max_hours: float = 120.0):
    """Simulates raw ICU stays: irregular charted events in the benchmark's timeseries layout, and outcomes.

    Args:
        num_stays: int. Number of stays.
        seed: int. Seed of the numpy generator.
        min_hours: float. Shortest stay in hours, at least 5.
        max_hours: float. Longest stay in hours, greater than `min_hours`.

    Returns:
        A list of dicts, one per stay: `timeseries` (dict `Hours` -> float hours at minute resolution, and each
        variable -> its column: floats with `NaN`, or benchmark spellings with `None`, where not charted),
        `name` (`<patient>_episode<k>_timeseries.csv`), `patient`, `los` (hours), `mortality` (in-hospital,
        0/1), `death_hours` (hours since admission, `None` if alive), `first_event` and `phenotype` (25 ints).
    """
    if isinstance(num_stays, bool) or not isinstance(num_stays, int) or num_stays < 1:
        raise ValueError(f"Invalid value for `num_stays`. Expected an int >= 1. Received: num_stays={num_stays!r}")
    if not 5.0 <= min_hours < max_hours:
        raise ValueError(
            f"Invalid stay bounds. Expected 5 <= min_hours < max_hours. Received: min_hours={min_hours}, "
            f"max_hours={max_hours}"
        )
    rng = np.random.default_rng(seed)
    state = _simulate_course(rng, num_stays, float(min_hours), float(max_hours))
    return [_stay_events(rng, state, index) for index in range(num_stays)]


# === Latent course: patients, severity, outcomes, phenotypes ===


def _simulate_course(rng, num_stays, min_hours, max_hours):
    counts = rng.choice(_STAYS_PER_PATIENT[0], size=num_stays, p=_STAYS_PER_PATIENT[1])
    patient = np.repeat(np.arange(num_stays), counts)[:num_stays]
    episode = np.concatenate([np.arange(1, c + 1) for c in counts])[:num_stays]
    profile = rng.normal(size=(num_stays, 5))[patient]
    factors = profile + 0.3 * rng.normal(size=profile.shape)  # the acute state differs between a patient's stays
    age = np.clip(62.0 + 15.0 * rng.normal(size=num_stays), 18.0, 90.0)[patient]
    body = rng.normal(size=(num_stays, 2))[patient]  # height and weight
    hours = int(np.ceil(max_hours)) + 1
    start = 0.45 * factors[:, INFECTION] + 0.3 * factors[:, CARDIAC] + 0.3 * factors[:, RESPIRATORY]
    start += 0.02 * (age - 62.0) + 0.6 * rng.normal(size=num_stays)
    drift = 0.012 * rng.normal(size=num_stays) + 0.004 * factors[:, INFECTION]
    steps = drift[:, None] + 0.07 * rng.normal(size=(num_stays, hours))
    severity = start[:, None] + np.cumsum(steps, axis=1) - steps[:, :1]
    # Death or discharge in hour (t - 1, t], for t past min_hours; still there at max_hours: discharged.
    p_death = 1.0 / (1.0 + np.exp(7.9 - 1.7 * severity))
    p_leave = 1.0 / (1.0 + np.exp(3.6 + 1.2 * severity))
    draw = rng.uniform(size=severity.shape)
    t = np.arange(hours)
    allowed = (t > min_hours) & (t <= max_hours)
    ends = allowed & (draw < p_death + p_leave)
    end = np.where(ends.any(axis=1), np.argmax(ends, axis=1), int(np.floor(max_hours)))
    died_in_icu = ends[np.arange(num_stays), end] & (
        draw[np.arange(num_stays), end] < p_death[np.arange(num_stays), end]
    )
    los = np.round(np.minimum(end - 1.0 + rng.uniform(0.05, 1.0, num_stays), max_hours), 6)
    los = np.maximum(los, min_hours + 0.05)
    final = severity[np.arange(num_stays), end]
    dies_later = ~died_in_icu & (rng.uniform(size=num_stays) < 1.0 / (1.0 + np.exp(4.0 - 1.3 * final)))
    later = los + rng.exponential(48.0, num_stays)
    death_hours = np.where(died_in_icu, los, np.where(dies_later, later, np.nan))
    peak = np.array([severity[i, : end[i] + 1].max() for i in range(num_stays)])
    model = _PHENOTYPE_MODEL
    logits = model[:, 2] + model[:, 1] * factors[:, model[:, 0].astype(int)] + model[:, 3] * peak[:, None]
    logits += model[:, 4] * (age[:, None] - 62.0) / 10.0
    phenotype = (rng.uniform(size=logits.shape) < 1.0 / (1.0 + np.exp(-logits))).astype("int32")
    return {
        "patient": patient + 10001, "episode": episode, "factors": factors, "age": age, "body": body,
        "severity": severity, "los": los, "death_hours": death_hours, "phenotype": phenotype,
        "system": rng.uniform(size=num_stays) < 0.5,
    }  # fmt: skip


# === Charted events of one stay ===


def _schedule(rng, los, interval, jitter, keep=1.0):
    """Charting times: about every `interval` hours from a random start, jittered, some skipped, in minutes."""
    times = rng.uniform(0.0, min(interval, los)) + np.arange(0.0, los, interval)
    times = times + rng.uniform(-jitter, jitter, times.shape)
    times = times[(rng.uniform(size=times.shape) < keep) & (times >= 0.0) & (times <= los)]
    return np.round(times * 60.0) / 60.0


def _stay_events(rng, state, index):
    los = float(state["los"][index])
    z = state["factors"][index]
    charted = {}

    def severity_at(times):
        return np.interp(times, np.arange(state["severity"].shape[1]), state["severity"][index])

    def chart(name, times, values):
        charted[name] = (times, values)

    vitals = np.concatenate([[np.round(rng.uniform(0.0, 0.5) * 60.0) / 60.0], _schedule(rng, los, 1.0, 0.25, 0.9)])
    s, pos = severity_at(vitals), np.maximum(z, 0.0)

    def noise(scale):
        return scale * rng.normal(size=vitals.shape)

    systolic = np.round(118.0 - 12.0 * s + 6.0 * z[CARDIAC] - 5.0 * pos[INFECTION] + noise(8.0))
    diastolic = np.round(59.0 - 6.0 * s + 3.0 * z[CARDIAC] + noise(5.0))
    chart("Heart Rate", vitals, np.round(86.0 + 10.0 * s + 4.0 * z[CARDIAC] + 5.0 * pos[INFECTION] + noise(6.0)))
    chart("Systolic blood pressure", vitals, systolic)
    chart("Diastolic blood pressure", vitals, diastolic)
    chart("Mean blood pressure", vitals, np.round((systolic + 2.0 * diastolic) / 3.0 + noise(2.0)))
    chart("Respiratory rate", vitals, np.maximum(np.round(19.0 + 3.0 * s + 3.0 * z[RESPIRATORY] + noise(2.5)), 6.0))
    chart("Oxygen saturation", vitals, np.minimum(np.round(97.5 - 1.5 * s - 2.0 * pos[RESPIRATORY] + noise(1.0)), 100))
    times = _schedule(rng, los, 4.0, 0.5)
    s = severity_at(times)
    chart("Temperature", times, np.round(36.8 + 0.6 * pos[INFECTION] + 0.2 * s + 0.3 * rng.normal(size=times.shape), 1))
    times = _schedule(rng, los, 6.0, 1.0)
    glucose = 128.0 + 25.0 * z[METABOLIC] + 10.0 * severity_at(times) + 20.0 * rng.normal(size=times.shape)
    chart("Glucose", times, np.maximum(np.round(glucose), 40.0))
    times = _schedule(rng, los, 8.0, 1.0, 0.5 + 0.4 * (z[RESPIRATORY] > 0))
    ph = 7.40 - 0.04 * severity_at(times) - 0.02 * z[METABOLIC] + 0.02 * rng.normal(size=times.shape)
    chart("pH", times, np.round(ph, 2))
    times = _schedule(rng, los, 4.0, 0.5, 0.8 if z[RESPIRATORY] > 0.5 else 0.2)
    fio2 = (
        0.21
        + 0.12 * np.maximum(severity_at(times), 0.0)
        + 0.08 * pos[RESPIRATORY]
        + 0.03 * rng.normal(size=times.shape)
    )
    chart("Fraction inspired oxygen", times, np.round(np.clip(fio2, 0.21, 1.0), 2))
    _chart_gcs(rng, chart, state, index, severity_at, los)
    times = _schedule(rng, los, 8.0, 1.0, 0.3)
    refill = rng.uniform(size=times.shape) < 1.0 / (1.0 + np.exp(2.5 - 1.5 * severity_at(times)))
    chart("Capillary refill rate", times, np.where(refill, "1.0", "0.0").astype(object))
    height, weight = state["body"][index]
    times = _schedule(rng, los, 24.0, 2.0, 0.6)
    chart("Weight", times, np.round(81.0 + 15.0 * weight + 1.5 * rng.normal(size=times.shape), 1))
    if rng.uniform() < 0.3:
        chart("Height", _schedule(rng, min(los, 6.0), 6.0, 0.0), np.round([170.0 + 10.0 * height]))
    return _assemble(state, index, los, charted)


def _chart_gcs(rng, chart, state, index, severity_at, los):
    """Charts the Glasgow coma scale components (and the total in CareVue) every few hours."""
    system = "metavision" if state["system"][index] else "carevue"
    times = _schedule(rng, los, 3.0, 0.5)
    level = severity_at(times) + 0.6 * state["factors"][index, NEURO_GI] + 0.5 * rng.normal(size=times.shape)
    consciousness = np.clip(1.0 - 0.3 * np.maximum(level - 0.3, 0.0), 0.0, 1.0)  # 1 = alert
    eye = np.round(3.0 * consciousness).astype(int)
    motor = np.round(5.0 * np.clip(consciousness + 0.1 * rng.normal(size=times.shape), 0.0, 1.0)).astype(int)
    verbal = np.round(4.0 * np.clip(consciousness + 0.1 * rng.normal(size=times.shape), 0.0, 1.0)).astype(int)
    intubated = level > 2.2
    chart("Glascow coma scale eye opening", times, np.array([_EYE[system][e] for e in eye], dtype=object))
    chart("Glascow coma scale motor response", times, np.array([_MOTOR[system][m] for m in motor], dtype=object))
    spoken = [_INTUBATED[system] if tube else _VERBAL[system][v] for v, tube in zip(verbal, intubated)]
    chart("Glascow coma scale verbal response", times, np.array(spoken, dtype=object))
    if system == "carevue":
        chart("Glascow coma scale total", times, np.array([str(t) for t in eye + motor + verbal + 3], dtype=object))


def _assemble(state, index, los, charted):
    """Joins the charted columns on their times into the benchmark's one-row-per-time layout."""
    hours = np.unique(np.concatenate([times for times, _ in charted.values()]))
    columns = {"Hours": hours}
    for name, (times, values) in charted.items():
        rows = np.searchsorted(hours, times)
        column = np.full(hours.shape, None if values.dtype == object else np.nan, dtype=values.dtype)
        column[rows] = values
        columns[name] = column
    death = state["death_hours"][index]
    patient = int(state["patient"][index])
    return {
        "timeseries": columns,
        "name": f"{patient}_episode{int(state['episode'][index])}_timeseries.csv",
        "patient": patient,
        "los": los,
        "mortality": int(not np.isnan(death)),
        "death_hours": None if np.isnan(death) else float(death),
        "first_event": float(hours[0]),
        "phenotype": state["phenotype"][index],
    }
