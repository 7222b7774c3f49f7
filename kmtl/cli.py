"""The `kmtl` command line: a thin layer over `kmtl.recipes` and `kmtl.runner`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


class _Parser(argparse.ArgumentParser):
    """Reports bad arguments as one line, `kmtl: error: ...`, and exits with status 2."""

    def error(self, message):
        # `prog` is "kmtl" for the main parser and "kmtl train" for a command's.
        self.exit(2, f"kmtl: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from kmtl.recipes import RECIPES
    from kmtl.weighting import STRATEGIES

    parser = _Parser(prog="kmtl", description="Multi-task learning recipes for Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("recipes", help="list the available recipes")
    train = commands.add_parser("train", help="train a recipe, print per-task metrics and export it")
    train.add_argument("recipe", choices=sorted(RECIPES), help="recipe name (see `kmtl recipes`)")
    train.add_argument("--epochs", type=_positive_int, help="training epochs (default: the recipe's)")
    train.add_argument("--batch-size", type=_positive_int, help="batch size (default: the recipe's)")
    train.add_argument("--weighting", choices=sorted(STRATEGIES), help="task weighting (default: the recipe's)")
    train.add_argument("--learning-rate", type=_positive_float, help="Adam learning rate (default: the recipe's)")
    train.add_argument("--export-dir", default="saved_models", help="export root (default: saved_models)")
    train.add_argument("--no-export", action="store_true", help="train and report only")
    train.add_argument("--quick", action="store_true", help="tiny data and one epoch: a smoke run")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument(
        "--data", dest="source", help="data source: synthetic (default), celeba:PATH, utkface:PATH, mimic3:PATH, pbcseq"
    )
    train.add_argument("--model", help="model of a recipe with several (e.g. channelwise, lstm; default: the recipe's)")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress bar (default: 1)")
    from kmtl.tuning.cli import add_tune_parser

    add_tune_parser(commands, _positive_int)
    from kmtl.evaluation.compare import add_compare_parser

    add_compare_parser(commands, _positive_int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `kmtl` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    from kmtl import recipes

    try:
        if args.command == "recipes":
            for name in sorted(recipes.RECIPES):
                print(f"{name:24s} {recipes.get(name).DESCRIPTION}")
            return 0
        if args.command == "tune":
            from kmtl.tuning.cli import run_tune_command

            return run_tune_command(args)
        if args.command == "compare":
            from kmtl.evaluation.compare import run_compare_command

            return run_compare_command(args)
        from kmtl.runner import train_recipe

        train_recipe(
            recipes.get(args.recipe),
            quick=args.quick,
            export_dir=None if args.no_export else args.export_dir,
            seed=args.seed,
            verbose=args.verbose,
            epochs=args.epochs,
            batch_size=args.batch_size,
            weighting=args.weighting,
            learning_rate=args.learning_rate,
            source=args.source,
            model=args.model,
        )
        return 0
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"kmtl: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
