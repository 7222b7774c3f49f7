"""Deterministic synthetic ICU stays in the MIMIC-III benchmark's format, with all five benchmark labels.

The latent structure, and what each task depends on:

- **Patient**: five comorbidity factors (cardiac, respiratory, metabolic-renal, infection, neuro-gastrointestinal),
  an age and a body size; about 30 % of patients have two or three stays (the factors vary a little per stay).
- **Phenotypes** (the `phenotype` task): drawn first, each from one factor and age (logistic), so phenotypes of one
  organ system co-occur, as in MIMIC-III. Each phenotype then leaves its own signature in specific charts
  (`_SIGNATURES`): hypertension raises blood pressure, conduction disorders slow the heart, dysrhythmia makes the
  heart rate irregular, diabetes raises glucose and its spread, COPD lowers oxygen saturation, sepsis brings fever
  and tachycardia, shock low pressure, slow capillary refill and acidosis, stroke and liver disease lower the GCS,
  heart failure loses weight (diuresis) and renal failure gains it. Chronic signatures last the whole stay; acute
  ones fade as they are treated (time constant 24 h), so they show in the first day or two only. Lipid disorders
  leave none (they follow only from their link to cardiac disease). A stay scales each signature by its own
  log-normal factor.
- **Severity**: one latent value per hour. It starts high by the acute phenotypes (sepsis, shock, respiratory
  failure, infarction, bleeding, ...) and age, then recovers exponentially towards a floor, more slowly with
  chronic disease (kidney, lung, heart, liver, complicated diabetes) and age; some stays (more of the sicker ones)
  start to deteriorate at an onset within the first 36 hours; slow autoregressive noise on top. Every vital sign
  and lab (heart rate, blood pressures, respiratory rate, saturation, temperature, glucose, pH, FiO2, GCS,
  capillary refill) moves with it, charted irregularly (vital signs about hourly, GCS and temperature every few
  hours, labs a few times a day, height and weight rarely), GCS in the CareVue or the MetaVision spellings
  (chosen per stay), then run through the `Discretizer`.
- **Outcomes**: the hourly hazard of death rises steeply with severity; discharge comes a few hours after severity
  falls below a threshold (hazard 0.15 per hour when well below it). So `decompensation` (death within 24 h) and
  `mortality` (in-hospital death, predicted at 48 h) depend on the current severity and its trend, and the
  remaining stay (`length_of_stay` buckets, `remaining_stay` hours) on how far severity is above the threshold and
  how fast it recovers, which the charts show over time: the level now, its trend over the last hours, and the
  hours already spent. The labels follow the stay's length and time of death exactly as the benchmark's scripts
  derive them; a few patients discharged in a poor state die later in hospital.

The tasks therefore share structure, as real ICU tasks do: the acute phenotypes raise severity, hence mortality
and length of stay. Stays last 12-120 hours (`min_hours`, `max_hours`): a stay still going at `max_hours` ends
there, so remaining stays fall in the first five buckets only (real stays reach the 8-14 and 14+ day buckets).

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
# Per phenotype (in `PHENOTYPES` order): the comorbidity factor that drives it, its weight, the bias, the weight of
# (age - 62) / 10, and the severity the condition adds at ICU admission (acute conditions make a stay sicker).
_PHENOTYPE_RISK = np.array(
    [
        (METABOLIC, 1.2, -1.3, 0.1, 0.4), (NEURO_GI, 1.4, -2.8, 0.1, 0.3), (CARDIAC, 1.4, -2.4, 0.1, 0.5),
        (CARDIAC, 1.2, -1.1, 0.2, 0.0), (METABOLIC, 1.3, -2.2, 0.2, 0.0), (RESPIRATORY, 1.4, -2.2, 0.2, 0.0),
        (NEURO_GI, 1.0, -1.8, 0.0, 0.3), (CARDIAC, 1.2, -2.6, 0.2, 0.0), (CARDIAC, 1.4, -1.6, 0.2, 0.0),
        (CARDIAC, 1.3, -1.2, 0.3, 0.0), (METABOLIC, 1.4, -2.4, 0.1, 0.0), (METABOLIC, 1.2, -1.6, 0.1, 0.0),
        (CARDIAC, 0.9, -1.4, 0.2, 0.0), (CARDIAC, 1.0, -0.7, 0.2, 0.0), (METABOLIC, 1.1, -1.0, 0.0, 0.2),
        (NEURO_GI, 1.3, -2.2, 0.0, 0.4), (CARDIAC, 1.2, -2.0, 0.2, 0.0), (NEURO_GI, 1.2, -2.3, 0.0, 0.0),
        (RESPIRATORY, 1.0, -2.4, 0.0, 0.0), (RESPIRATORY, 0.9, -2.8, 0.0, 0.0), (RESPIRATORY, 1.0, -2.5, 0.0, 0.3),
        (INFECTION, 1.2, -1.6, 0.0, 0.4), (RESPIRATORY, 1.3, -1.6, 0.0, 0.8), (INFECTION, 1.5, -2.2, 0.0, 0.8),
        (INFECTION, 1.0, -2.8, 0.0, 1.2),
    ]
)  # fmt: skip
# Chronic conditions that slow recovery (kidney disease, COPD, heart failure, complicated diabetes, liver disease).
_SLOW_RECOVERY = (4, 5, 8, 10, 17)
# What each phenotype leaves in the charts: (signal, size, profile). Signals are offsets of one vital or lab in its
# units (`weight` in kg per day, `*_jitter` extra hour-to-hour standard deviation); profile "chronic" lasts the
# whole stay, "acute" fades as it is treated (exp(-hours / 24)). Each stay scales a phenotype's sizes by a
# log-normal factor, so no signature is exact. Lipid disorders leave none: only their link to cardiac disease.
_SIGNATURES = (
    (("ph", -0.05, "chronic"), ("weight", 1.5, "chronic")),  # acute renal failure: acidosis, fluid gain
    (("consciousness", 1.5, "chronic"), ("systolic", 15.0, "acute")),  # stroke
    (("heart_rate", 10.0, "acute"), ("systolic", -12.0, "acute")),  # myocardial infarction
    (("heart_rate_jitter", 14.0, "chronic"), ("heart_rate", 5.0, "chronic")),  # dysrhythmia: irregular rate
    (("ph", -0.03, "chronic"), ("diastolic", 4.0, "chronic")),  # chronic kidney disease
    (("oxygen_saturation", -2.5, "chronic"), ("respiratory_rate", 3.0, "chronic"), ("fio2", 0.05, "chronic")),
    (("temperature", 0.5, "acute"), ("heart_rate", 6.0, "acute")),  # complications of procedures
    (("heart_rate", -15.0, "chronic"),),  # conduction disorders: bradycardia
    (("oxygen_saturation", -1.5, "chronic"), ("respiratory_rate", 2.0, "chronic"), ("weight", -1.5, "chronic"),
     ("systolic", -6.0, "chronic")),  # heart failure: diuresed
    (("heart_rate", -5.0, "chronic"), ("systolic", -4.0, "chronic")),  # coronary disease: beta blockers
    (("glucose", 60.0, "chronic"), ("glucose_jitter", 35.0, "chronic"), ("ph", -0.02, "chronic")),
    (("glucose", 35.0, "chronic"), ("glucose_jitter", 15.0, "chronic")),
    (),  # disorders of lipid metabolism
    (("systolic", 15.0, "chronic"), ("diastolic", 7.0, "chronic")),  # essential hypertension
    (("ph", -0.03, "acute"), ("heart_rate", 5.0, "acute")),  # fluid and electrolyte disorders
    (("heart_rate", 14.0, "acute"), ("systolic", -15.0, "acute"), ("diastolic", -6.0, "acute")),  # bleeding
    (("systolic", 18.0, "chronic"), ("diastolic", 8.0, "chronic"), ("ph", -0.02, "chronic")),
    (("consciousness", 0.8, "chronic"), ("glucose", -15.0, "chronic")),  # liver disease: encephalopathy
    (("respiratory_rate", 2.0, "chronic"), ("oxygen_saturation", -1.0, "chronic")),
    (("respiratory_rate", 1.5, "chronic"),),
    (("oxygen_saturation", -2.5, "acute"), ("respiratory_rate", 4.0, "acute")),  # pneumothorax
    (("temperature", 0.8, "acute"), ("fio2", 0.08, "chronic"), ("oxygen_saturation", -1.5, "chronic"),
     ("respiratory_rate", 2.0, "acute")),  # pneumonia
    (("fio2", 0.2, "acute"), ("respiratory_rate", 4.0, "acute"), ("ph", -0.04, "acute")),  # respiratory failure
    (("temperature", 1.0, "acute"), ("heart_rate", 12.0, "acute"), ("systolic", -10.0, "acute")),  # sepsis
    (("systolic", -20.0, "acute"), ("diastolic", -10.0, "acute"), ("heart_rate", 10.0, "acute"),
     ("refill", 2.5, "acute"), ("ph", -0.06, "acute")),  # shock
)
_ACUTE_HOURS = 24.0
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
        0/1), `death_hours` (hours since admission, `None` if alive), `first_event`, `phenotype` (25 ints), and
        the latent course: `severity` (float per hour from admission, hour 0 first), `factors` (the five
        comorbidity factors) and `age`.
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
    # Phenotypes first: they come from the comorbidity factors and age, and then shape the course and the charts.
    risk = _PHENOTYPE_RISK
    logits = risk[:, 2] + risk[:, 1] * factors[:, risk[:, 0].astype(int)] + risk[:, 3] * (age[:, None] - 62.0) / 10.0
    phenotype = (rng.uniform(size=logits.shape) < 1.0 / (1.0 + np.exp(-logits))).astype("int32")
    strength = np.exp(0.3 * rng.normal(size=phenotype.shape)) * phenotype  # how marked each condition is
    # Severity: high at admission by the acute conditions, then recovering exponentially towards a floor (slower
    # with chronic disease and age); some stays turn to deteriorate from an onset hour. Plus slow noise.
    hours = int(np.ceil(max_hours)) + 1
    t = np.arange(hours, dtype="float64")
    burden = strength @ risk[:, 4] + 0.015 * (age - 62.0) + 0.5 * rng.normal(size=num_stays)
    start = -0.2 + burden
    chronic = phenotype[:, _SLOW_RECOVERY].sum(axis=1)
    rate = 0.018 * np.exp(0.4 * rng.normal(size=num_stays) - 0.005 * (age - 62.0)) / (1.0 + 0.25 * chronic)
    floor = -1.0 + 0.1 * chronic + 0.3 * rng.normal(size=num_stays)
    recovering = floor[:, None] + (start - floor)[:, None] * np.exp(-rate[:, None] * t)
    worsens = rng.uniform(size=num_stays) < 1.0 / (1.0 + np.exp(3.0 - 1.1 * burden))
    onset = rng.uniform(0.0, 36.0, num_stays)
    slope = 0.025 * np.exp(0.4 * rng.normal(size=num_stays)) * worsens
    noise = np.zeros((num_stays, hours))
    shocks = 0.08 * rng.normal(size=(num_stays, hours))
    for k in range(1, hours):  # autoregressive: hour-to-hour correlation 0.92
        noise[:, k] = 0.92 * noise[:, k - 1] + shocks[:, k]
    severity = recovering + slope[:, None] * np.maximum(t[None, :] - onset[:, None], 0.0) + noise
    # Death or discharge in hour (t - 1, t], for t past min_hours; still there at max_hours: discharged. The
    # hazard of death rises with severity; discharge comes a few hours after severity falls below -0.5.
    p_death = 1.0 / (1.0 + np.exp(10.0 - 3.0 * severity))
    p_leave = 0.15 / (1.0 + np.exp(10.0 * (severity + 0.5)))
    draw = rng.uniform(size=severity.shape)
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
    return {
        "patient": patient + 10001, "episode": episode, "factors": factors, "age": age, "body": body,
        "severity": severity, "los": los, "death_hours": death_hours, "phenotype": phenotype,
        "strength": strength, "system": rng.uniform(size=num_stays) < 0.5,
    }  # fmt: skip


# === Charted events of one stay ===


def _schedule(rng, los, interval, jitter, keep=1.0):
    """Charting times: about every `interval` hours from a random start, jittered, some skipped, in minutes."""
    times = rng.uniform(0.0, min(interval, los)) + np.arange(0.0, los, interval)
    times = times + rng.uniform(-jitter, jitter, times.shape)
    times = times[(rng.uniform(size=times.shape) < keep) & (times >= 0.0) & (times <= los)]
    return np.round(times * 60.0) / 60.0


def _signatures(strength):
    """The chart offsets of a stay's phenotypes: a function of signal name and times (hours) -> offsets."""
    present = [(name, size * s, profile) for s, signs in zip(strength, _SIGNATURES) if s > 0
               for name, size, profile in signs]  # fmt: skip

    def offset(name, times):
        out = np.zeros(np.shape(times))
        for signal, size, profile in present:
            if signal == name:
                out += size * (np.exp(-np.asarray(times) / _ACUTE_HOURS) if profile == "acute" else 1.0)
        return out

    return offset


def _stay_events(rng, state, index):
    los = float(state["los"][index])
    sign = _signatures(state["strength"][index])
    charted = {}

    def severity_at(times):
        return np.interp(times, np.arange(state["severity"].shape[1]), state["severity"][index])

    def chart(name, times, values):
        charted[name] = (times, values)

    vitals = np.concatenate([[np.round(rng.uniform(0.0, 0.5) * 60.0) / 60.0], _schedule(rng, los, 1.0, 0.25, 0.9)])
    s = severity_at(vitals)

    def noise(scale, times=vitals):
        return scale * rng.normal(size=np.shape(times))

    jitter = 6.0 + sign("heart_rate_jitter", vitals)
    systolic = np.round(118.0 - 16.0 * s + sign("systolic", vitals) + noise(8.0))
    diastolic = np.round(59.0 - 8.0 * s + sign("diastolic", vitals) + noise(5.0))
    chart("Heart Rate", vitals, np.round(np.maximum(86.0 + 14.0 * s + sign("heart_rate", vitals) + jitter *
                                                    rng.normal(size=vitals.shape), 30.0)))
    chart("Systolic blood pressure", vitals, systolic)
    chart("Diastolic blood pressure", vitals, diastolic)
    chart("Mean blood pressure", vitals, np.round((systolic + 2.0 * diastolic) / 3.0 + noise(2.0)))
    rate = 19.0 + 4.0 * s + sign("respiratory_rate", vitals) + noise(2.5)
    chart("Respiratory rate", vitals, np.maximum(np.round(rate), 6.0))
    saturation = 97.5 - 2.0 * s + sign("oxygen_saturation", vitals) + noise(1.0)
    chart("Oxygen saturation", vitals, np.minimum(np.round(saturation), 100.0))
    times = _schedule(rng, los, 4.0, 0.5)
    temperature = 36.8 + 0.2 * severity_at(times) + sign("temperature", times) + noise(0.3, times)
    chart("Temperature", times, np.round(temperature, 1))
    times = _schedule(rng, los, 6.0, 1.0)
    spread = 20.0 + sign("glucose_jitter", times)
    glucose = 128.0 + 10.0 * severity_at(times) + sign("glucose", times) + spread * rng.normal(size=times.shape)
    chart("Glucose", times, np.maximum(np.round(glucose), 40.0))
    breathing = sign("fio2", 0.0) > 0.03  # on oxygen: blood gases and FiO2 charted more often
    times = _schedule(rng, los, 8.0, 1.0, 0.9 if breathing else 0.5)
    ph = 7.40 - 0.04 * severity_at(times) + sign("ph", times) + noise(0.02, times)
    chart("pH", times, np.round(ph, 2))
    times = _schedule(rng, los, 4.0, 0.5, 0.8 if breathing else 0.2)
    fio2 = 0.21 + 0.12 * np.maximum(severity_at(times), 0.0) + sign("fio2", times) + noise(0.03, times)
    chart("Fraction inspired oxygen", times, np.round(np.clip(fio2, 0.21, 1.0), 2))
    _chart_gcs(rng, chart, state, index, lambda times: severity_at(times) + sign("consciousness", times), los)
    times = _schedule(rng, los, 8.0, 1.0, 0.3)
    logit = -2.5 + 1.5 * severity_at(times) + sign("refill", times)
    refill = rng.uniform(size=times.shape) < 1.0 / (1.0 + np.exp(-logit))
    chart("Capillary refill rate", times, np.where(refill, "1.0", "0.0").astype(object))
    height, weight = state["body"][index]
    times = _schedule(rng, los, 24.0, 2.0, 0.6)
    kilos = 81.0 + 15.0 * weight + sign("weight", times) * times / 24.0 + noise(1.5, times)
    chart("Weight", times, np.round(kilos, 1))
    if rng.uniform() < 0.3:
        chart("Height", _schedule(rng, min(los, 6.0), 6.0, 0.0), np.round([170.0 + 10.0 * height]))
    return _assemble(state, index, los, charted)


def _chart_gcs(rng, chart, state, index, severity_at, los):
    """Charts the Glasgow coma scale components (and the total in CareVue) every few hours."""
    system = "metavision" if state["system"][index] else "carevue"
    times = _schedule(rng, los, 3.0, 0.5)
    level = severity_at(times) + 0.5 * rng.normal(size=times.shape)  # includes the phenotypes' drowsiness
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
        # The latent course, for checks and explanations (never charted as such):
        "severity": state["severity"][index, : int(np.ceil(los)) + 1],
        "factors": state["factors"][index],
        "age": float(state["age"][index]),
    }
