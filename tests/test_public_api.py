"""Pins kmtl's public names, and checks the installed layout that users and the CLI rely on."""

import importlib
import subprocess
import sys
import zipfile

import pytest

import kmtl

PUBLIC = {
    "kmtl": [
        "EvaluationReport", "MultiTaskModel", "Recipe", "RecipeData", "Task", "backbones", "builders", "data",
        "evaluate", "evaluation", "export", "grouping", "heads", "layers", "load_model", "losses", "metrics", "preprocessing", "regularizers",
        "training", "tuning", "weighting",
    ],
    "kmtl.builders": [
        "cross_stitch", "hard_sharing", "hierarchy", "mmoe", "ple", "sluice", "soft_sharing", "split",
        "stacked_heads_model", "unet",
    ],
    "kmtl.layers": [
        "CRF", "ChannelGroups", "CharacterCNN", "CrossStitch", "ExpertGate", "ExpertMixture", "Experts",
        "FeatureFusion", "GradientReversal", "GroupedLSTM", "LabelEmbedding", "LayerMixture", "RandomEffects",
        "ScheduledGradientReversal", "SequenceMean", "SequenceReadout", "StackedHeads", "StopGradient",
        "SubspaceMixing", "TensorFactorizedDense",
    ],
    "kmtl.regularizers": [
        "GroupLasso", "MeanRegularized", "Penalty", "SoftSharingL2", "TaskCovarianceUpdater", "TaskRelationshipPrior",
        "TraceNorm",
    ],
    "kmtl.weighting": [
        "AlignedMTL", "CAGrad", "ConFIG", "DWA", "DualProj", "Equal", "FAMO", "GeometricMean", "GradDrop", "GradNorm",
        "GradVac", "GradientWeighting", "IMTLG", "IMTLL", "MGDA", "NashMTL", "PCGrad", "RLW", "STRATEGIES", "Static",
        "UPGrad", "Uncertainty", "Weighting", "get",
    ],
    "kmtl.export": ["for_serving", "serving_outputs"],
    "kmtl.data": [
        "ETHNICITIES", "FACE_TASK_NAMES", "HAIR_COLOURS", "ICU_LABEL_NAMES", "LANDMARK_NAMES", "LOS_BUCKETS",
        "PBCSEQ_FEATURES", "PBCSEQ_LABELS", "PHENOTYPES", "SequenceData", "celeba_dataset", "faces_dataset",
        "generate_faces", "generate_icu_stays", "generate_lesions", "load_celeba", "load_fashion_mnist",
        "load_image_folder", "load_mimic3", "load_pbcseq", "load_utkface",
        "los_bucket", "parse_utkface_name", "simulate_icu_events", "to_dataset", "utkface_dataset",
    ],
    "kmtl.preprocessing": ["Discretizer", "Normalizer", "VARIABLES"],
    "kmtl.training": [
        "BackupAndResume", "ExpertUtilizationLogger", "GradientConflictMonitor", "GradientReversalSchedule",
        "MultiOptimizer", "TaskNaNGuard", "TaskProgbarLogger", "distribute", "expert_utilization", "grl_schedule",
    ],
    "kmtl.model": ["MultiOptimizer", "MultiTaskModel", "MultiWorkerSupport", "TaskNaNGuard", "TaskProgbarLogger"],
    "kmtl.evaluation": [
        "ComparisonResult", "ConfusionMatrix", "CrossValidationResult", "EvaluationReport", "MultiTaskCheckpoint",
        "classical_scores", "compare_single_task", "cross_validate", "delta_m", "evaluate", "reference_scores",
        "report_from_logs", "save_plots", "trivial_scores",
    ],
    "kmtl.recipes": ["RECIPES", "get"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module):
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_every_recipe_is_a_declared_recipe():
    from kmtl import recipes

    for name in recipes.RECIPES:
        recipe = recipes.get(name)
        assert isinstance(recipe, kmtl.Recipe) and recipe.name == name
        module = importlib.import_module(recipes.RECIPES[name].module)
        assert module.RECIPE is recipe and module.NAME == name and module.DEFAULTS is recipe.defaults


@pytest.mark.parametrize("imports", ["import keras, kmtl", "import kmtl, keras", "import kmtl; import tensorflow as tf"])
@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_saved_models_load_after_a_plain_import_kmtl(tmp_path, imports):
    """Every kmtl object in a .keras file must be registered by `import kmtl` alone (fresh process)."""
    import keras

    from kmtl.regularizers import SoftSharingL2

    tasks = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")]
    model = kmtl.builders.soft_sharing(keras.Input((3,), name="f"), tasks, tower_units=(4,))
    plain = kmtl.MultiTaskModel(
        model.input, model.output, tasks=tasks, penalties=[SoftSharingL2(["tower_a_1", "tower_b_1"])]
    )
    plain.compile(optimizer="sgd", weighting="uncertainty")
    plain.save(tmp_path / "m.keras")
    code = (
        f"import sys; {imports}; import keras; m = keras.saving.load_model(sys.argv[1], safe_mode=True); "
        "print(type(m).__name__, len(m.penalties), type(m.weighting).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], check=True, capture_output=True,
                         text=True)
    assert out.stdout.split()[-3:] == ["MultiTaskModel", "1", "Uncertainty"]


@pytest.mark.slow
def test_built_wheel_installs_kmtl_recipes(tmp_path):
    """A regular (non-editable) install must carry `recipes/` as `kmtl.recipes`."""
    root = importlib.import_module("kmtl").__file__.rsplit("/kmtl/", 1)[0]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), root],
        check=True,
    )
    wheel = next(tmp_path.glob("kmtl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "kmtl/recipes/facial_attributes.py" in names
    assert "kmtl/recipes/__init__.py" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import kmtl.recipes.facial_attributes as fa; "
        "assert fa.__file__.startswith(sys.argv[1]), fa.__file__; print(fa.NAME)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(target)], check=True, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "facial-attributes"
