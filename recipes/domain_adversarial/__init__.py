"""Domain-adversarial training: a main task learned on a labelled source domain for an unlabelled target domain.

A shared trunk feeds two heads: the main task and a domain classifier (source or target?) behind a gradient
reversal layer. The domain head learns to tell the domains apart; the reversed gradient pushes the trunk the other
way, towards features that do not show the domain, so a main head trained on source labels carries over to the
target (DANN, Ganin & Lempitsky 2015). The reversal's strength follows the paper's schedule
`lambda_p = 2 / (1 + exp(-10 p)) - 1` over training progress `p`, counted inside the model by
`kmtl.layers.ScheduledGradientReversal`, so it runs under `kmtl train`, `compare` and `tune` alike. `adversary=False`
keeps the domain head but sets the strength to 0: the same model, data and initialisation, without the adversary.

Training batches are half labelled source examples and half target examples whose main-task label is missing
(-1); both carry their domain label. Validation scores the main task on source labels only; the test split on
target labels only. `report` (what `kmtl compare` prints) trains the model with and without the adversary and
gives their target and source accuracy, the domain head's accuracy, and that of a fresh domain probe (logistic
regression) on the frozen shared features, which falls toward chance (0.5) only if the features no longer show
the domain (with the default SGD it falls to about 0.77 on noisy Fashion-MNIST, not on the moons: see the docs'
measurements). `kmtl train` prints the same scores for the one model it trains (`trained_report`).

Training: `optimizer="sgd"` (default), the paper's SGD with momentum 0.9 and a learning rate annealed over the run,
or `"adam"`.

Data: `source="synthetic"` (default): two half-moons, the target domain rotated by 30 degrees (`generate_moons`);
`source="fashion-mnist"`: Debian's `dataset-fashion-mnist`, clean source images and `shift="invert"`ed (default)
or `"noise"`d target images. See `docs/domain_adversarial.md`.

Example:

>>> from kmtl.recipes import domain_adversarial as da
>>> settings = da.RECIPE.settings(quick=True)
>>> print(da.RECIPE.baselines(settings, seed=0))  # doctest: +SKIP

Reference:
    Ganin & Lempitsky (2015). Unsupervised Domain Adaptation by Backpropagation. ICML.
    Ganin et al. (2016). Domain-Adversarial Training of Neural Networks. JMLR 17.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras

import kmtl
from kmtl.backbones import mlp
from kmtl.heads import task_head
from kmtl.layers import ScheduledGradientReversal
from kmtl.recipe import Recipe
from kmtl.recipes.domain_adversarial._data import (
    NUM_TEST,
    NUM_TRAIN,
    ROTATION,
    SHIFTS,
    SOURCES,
    DomainData,
    Domains,
    domain_task,
    generate_moons,
    load_data,
    load_fashion_domains,
    main_task,
    make_tasks,
    rotate,
    shift_images,
)
from kmtl.training.schedules import OPTIMIZERS, AnnealedLearningRate, make_optimizer
from kmtl.recipes.domain_adversarial._report import (
    COLUMNS,
    FEATURES,
    classes,
    domain_probe,
    report,
    scores,
    shared_features,
)

NAME = "domain-adversarial"
DESCRIPTION = "Main task on a labelled source domain, a domain classifier behind scheduled gradient reversal (DANN)."

# Training defaults used by `kmtl train domain-adversarial`; `QUICK` overrides them for `--quick` runs. The paper's
# SGD (momentum 0.9, annealed rate) from mu_0 = 0.1 gave the best target accuracy with the adversary on the moons and
# noisy Fashion-MNIST (3 seeds each; Adam at 1e-3 and SGD from 0.01 were tried), and the adversary then helped on
# every seed (docs/domain_adversarial.md).
DEFAULTS = {
    "epochs": 30,
    "batch_size": 128,
    "weighting": "equal",
    "learning_rate": 0.1,
    "source": "synthetic",
    "shift": None,
    "num_train": None,
    "num_test": None,
    "adversary": True,
    "max_strength": 1.0,
    "features": 64,
    "domain_units": 64,
    "optimizer": "sgd",
}
QUICK = {"epochs": 1, "num_train": 64, "num_test": 64, "features": 8, "domain_units": 8}
# What `kmtl tune domain-adversarial` searches (first choices are the defaults). Its objective is the validation
# split's main-task score, on source labels: no target label chooses the settings.
SEARCH_SPACE = {
    "max_strength": [1.0, 0.3, 3.0],
    "learning_rate": {"min": 0.01, "max": 0.3, "sampling": "log", "default": 0.1},
}

TASKS = make_tasks()


def build_model(
    input_shape: Sequence[int] = (2,),
    schedule_steps: int = 1000,
    *,
    adversary: bool = DEFAULTS["adversary"],
    max_strength: float = DEFAULTS["max_strength"],
    features: int = DEFAULTS["features"],
    domain_units: int = DEFAULTS["domain_units"],
    tasks: Sequence[kmtl.Task] | None = None,
) -> kmtl.MultiTaskModel:
    """Builds the model (uncompiled): a shared trunk, the main head, and the domain head behind gradient reversal.

    The trunk is an MLP for points `(2,)` (input `x`) and the convolutional part of Ganin & Lempitsky's MNIST
    network for images `(28, 28, 1)` (input `image`);
    its last layer, `features` (Dense + ReLU), is what both heads read and what the domain probe sees. The domain
    head (one hidden layer of `domain_units`) reads it through `ScheduledGradientReversal` (layer
    `gradient_reversal`), whose strength rises from 0 to `max_strength` over `schedule_steps` train steps.

    Args:
        input_shape: shape of one example (`load_data(...).model_settings`).
        schedule_steps: int. Train steps of the whole run (`load_data(...).model_settings`, epochs x steps).
        adversary: bool. False: the reversal's strength stays 0, so the domain head learns but the trunk never sees
            its gradient (the model without the adversary, otherwise the same).
        max_strength: float >= 0. The reversal's final strength.
        features: int. Width of the shared features.
        domain_units: int. Hidden units of the domain head.
        tasks: the main task, with or without `domain` (`load_data(...).model_settings`); without it, no domain
            head. Defaults to the synthetic tasks for points, Fashion-MNIST's for images.

    Returns:
        `kmtl.MultiTaskModel` with outputs keyed by task name; `domain` is auxiliary, left out of exports. Its
        `schedule_steps` attribute is the run's length, which `compile_model` anneals the SGD rate over.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) not in (1, 3):
        raise ValueError(
            f"Invalid value for `input_shape`. Expected points (d,) or images (h, w, c). Received: {input_shape}"
        )
    if not isinstance(adversary, bool):
        raise ValueError(f"Invalid value for `adversary`. Expected a bool. Received: adversary={adversary!r}")
    images = len(input_shape) == 3
    tasks = list(tasks) if tasks is not None else make_tasks("fashion-mnist" if images else "synthetic")

    # === Shared trunk ===
    inputs = keras.Input(input_shape, name="image" if images else "x")
    trunk = _image_trunk(inputs) if images else mlp(inputs, units=(features,))
    shared = keras.layers.Dense(features, activation="relu", name=FEATURES)(trunk)

    # === Heads ===
    outputs = {}
    for task in tasks:
        if task.name != "domain":
            outputs[task.name] = task_head(task, shared)
            continue
        strength = max_strength if adversary else 0.0
        reversed_ = ScheduledGradientReversal(schedule_steps, max_strength=strength, name="gradient_reversal")(shared)
        outputs[task.name] = task_head(task, reversed_, hidden_units=(domain_units,))
    model = kmtl.MultiTaskModel(inputs, outputs, tasks=tasks, name="domain_adversarial")
    model.schedule_steps = int(schedule_steps)  # the run's length, for compile_model's annealed SGD rate
    return model


def _image_trunk(inputs):
    """The convolutional part of the paper's MNIST network: 5x5 convolutions of 32 and 48 filters, each with ReLU
    and 2x2 max-pooling, flattened (no batch norm, whose statistics would mix the domains)."""
    x = inputs
    for i, filters in enumerate((32, 48), start=1):
        x = keras.layers.Conv2D(filters, 5, activation="relu", name=f"trunk_conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"trunk_pool{i}")(x)
    return keras.layers.Flatten(name="trunk_flatten")(x)


def compile_model(model: kmtl.MultiTaskModel, weighting="equal", learning_rate: float = DEFAULTS["learning_rate"],
                  optimizer: str = DEFAULTS["optimizer"]):
    """Compiles with the given weighting (default `"equal"`: main loss plus domain loss) and optimizer.

    Args:
        model: a `build_model` model.
        weighting: weighting strategy.
        learning_rate: float. SGD's first rate `mu_0` (default 0.1), or Adam's rate (1e-3 is Adam's usual).
        optimizer: `"sgd"` (default): Ganin & Lempitsky's SGD with momentum 0.9 and the rate annealed as
            `mu_0 / (1 + 10 p) ** 0.75` over the run's progress `p` (`model.schedule_steps` train steps;
            `AnnealedLearningRate`; the paper's `mu_0` is 0.01, for much longer runs); or `"adam"`.
    """
    model.compile(optimizer=make_optimizer(optimizer, learning_rate, model.schedule_steps), weighting=weighting)
    return model


def train_both(settings: Mapping, seed: int = 0, log=None) -> tuple[dict, DomainData]:
    """Trains the recipe's model with and without the adversary (same data, order and initialisation).

    Returns:
        `({label: trained model}, data)`.
    """
    models = {}
    for adversary in (True, False):
        data = RECIPE.load(settings, seed=seed)  # reloaded: both models see the same batches in the same order
        keras.utils.set_random_seed(seed)
        model = RECIPE.compile(RECIPE.build(settings, data, adversary=adversary), settings)
        label = model_label({**settings, "adversary": adversary})
        if log is not None:
            log(f"Training: {label}")
        model.fit(data.train, epochs=settings["epochs"], verbose=0, shuffle=False)
        models[label] = model
    return models, data


def model_label(settings: Mapping) -> str:
    """The report's row label of the model trained with `settings`."""
    return f"adversary (max strength {settings['max_strength']:g})" if settings["adversary"] else "no adversary"


def trained_report(model, data: DomainData, settings: Mapping, seed: int = 0) -> str:
    """`report_of` one model trained with `settings` on `data`: what `kmtl train domain-adversarial` prints after its
    table (the recipe's `report`). `kmtl compare` trains the model without the adversary beside it (`baselines`)."""
    text = report_of({model_label(settings): model}, data, settings, seed)
    return text + "\nWith and without the adversary on the same data: kmtl compare domain-adversarial."


def baselines(settings: Mapping, seed: int = 0) -> str:
    """The domain-adaptation report: the model with and without the adversary, trained on the split `load_data`
    makes with `settings` and `seed` (as `kmtl compare` does), scored on the test split (`COLUMNS`)."""
    models, data = train_both(settings, seed)
    return report_of(models, data, settings, seed)


def report_of(models: Mapping, data: DomainData, settings: Mapping, seed: int = 0) -> str:
    """The report of trained models (`{label: model}`, e.g. from `train_both`) on `data`'s test split."""
    test = data.parts[2]
    main = data.tasks[0].name
    results = {label: scores(model, test, main, seed) for label, model in models.items()}
    source = settings["source"]
    shift = settings["shift"] or SHIFTS[source][0]
    title = (f"Domain adaptation ({source}, target {shift}{f' {ROTATION:g} degrees' if shift == 'rotate' else ''}; "
             f"{len(data.parts[0].y_source)} labelled source + {len(data.parts[0].y_target)} unlabelled target "
             f"training examples, {settings['epochs']} epochs):")
    return report(results, test, title)


RECIPE = Recipe(
    name=NAME,
    description=DESCRIPTION,
    tasks=TASKS,
    build_model=build_model,
    compile_model=compile_model,
    load_data=load_data,
    defaults=DEFAULTS,
    quick=QUICK,
    # `epochs` reaches `load_data`, which turns it into the schedule's span (`schedule_steps`).
    data_settings=("source", "shift", "num_train", "num_test", "epochs"),
    model_settings=("adversary", "max_strength", "features", "domain_units"),
    compile_settings=("optimizer",),
    derived_settings=("input_shape", "schedule_steps", "tasks"),
    search_space=SEARCH_SPACE,
    sources="synthetic (default), fashion-mnist",
    baselines=baselines,
    report=trained_report,
)

__all__ = [
    "COLUMNS",
    "DEFAULTS",
    "OPTIMIZERS",
    "AnnealedLearningRate",
    "DESCRIPTION",
    "FEATURES",
    "NAME",
    "NUM_TEST",
    "NUM_TRAIN",
    "QUICK",
    "RECIPE",
    "ROTATION",
    "SHIFTS",
    "SOURCES",
    "TASKS",
    "DomainData",
    "Domains",
    "baselines",
    "build_model",
    "classes",
    "compile_model",
    "domain_probe",
    "domain_task",
    "generate_moons",
    "load_data",
    "load_fashion_domains",
    "main_task",
    "make_optimizer",
    "make_tasks",
    "model_label",
    "report",
    "report_of",
    "rotate",
    "scores",
    "shared_features",
    "shift_images",
    "train_both",
    "trained_report",
]
