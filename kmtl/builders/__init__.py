"""Builders: plain functions that return a `kmtl.MultiTaskModel`."""

from kmtl.builders.hard_sharing import hard_sharing

__all__ = ["hard_sharing"]
