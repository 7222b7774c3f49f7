"""Builders: plain functions that return a `kmtl.MultiTaskModel`. See docs/architectures.md for which to choose."""

from kmtl.builders.cross_stitch import cross_stitch
from kmtl.builders.hard_sharing import hard_sharing
from kmtl.builders.hierarchy import hierarchy
from kmtl.builders.many_tasks import stacked_heads_model
from kmtl.builders.mmoe import mmoe
from kmtl.builders.ple import ple
from kmtl.builders.sluice import sluice
from kmtl.builders.soft_sharing import soft_sharing
from kmtl.builders.split import split
from kmtl.builders.unet import unet

__all__ = [
    "cross_stitch",
    "hard_sharing",
    "hierarchy",
    "mmoe",
    "ple",
    "sluice",
    "soft_sharing",
    "split",
    "stacked_heads_model",
    "unet",
]
