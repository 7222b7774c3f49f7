"""Reusable preprocessing for clinical and other irregular time series: binning with masks, normalisation."""

from kmtl.preprocessing.discretizer import VARIABLES, Discretizer
from kmtl.preprocessing.normalizer import Normalizer

__all__ = ["VARIABLES", "Discretizer", "Normalizer"]
