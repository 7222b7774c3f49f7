"""The `kmtl tune` subcommand: its arguments and what it runs (kept here so `kmtl/cli.py` stays a thin layer).

This module imports nothing heavy; keras-tuner is imported when the command runs.
"""

from __future__ import annotations

import argparse


def add_tune_parser(commands, positive_int) -> argparse.ArgumentParser:
    """Adds `kmtl tune <recipe> --max-trials N [...]` to the `kmtl` subparsers `commands`."""
    from kmtl.recipes import RECIPES

    tune = commands.add_parser("tune", help="search a recipe's hyper-parameters with keras-tuner")
    tune.add_argument("recipe", choices=sorted(RECIPES), help="recipe name (see `kmtl recipes`)")
    tune.add_argument("--max-trials", type=positive_int, required=True, help="trials in all")
    tune.add_argument("--epochs", type=positive_int, help="epochs per trial (default: the recipe's)")
    tune.add_argument("--quick", action="store_true", help="the recipe's tiny settings: a smoke run")
    tune.add_argument("--directory", default="tuning", help="root of search folders (default: tuning)")
    tune.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    tune.add_argument("--tuner", choices=("random", "bayesian"), default="random", help="search (default: random)")
    existing = tune.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the search found in the folder")
    existing.add_argument("--overwrite", action="store_true", help="delete the search found in the folder first")
    tune.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="progress output (default: 1)")
    return tune


def run_tune_command(args) -> int:
    """Runs `kmtl tune` for parsed `args`; returns the exit status."""
    from kmtl.tuning.run import tune_recipe

    tune_recipe(
        args.recipe,
        max_trials=args.max_trials,
        epochs=args.epochs,
        quick=args.quick,
        directory=args.directory,
        seed=args.seed,
        kind=args.tuner,
        resume=args.resume,
        overwrite=args.overwrite,
        verbose=args.verbose,
    )
    return 0
