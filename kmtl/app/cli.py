"""The `kmtl` command line: a thin argparse layer over `kmtl.app.train`, `kmtl.app.compare` and `kmtl.app.tune`.

Parsing, `--help` and `kmtl recipes` import no TensorFlow: recipes are listed from the registry's names and
descriptions, and a command imports what it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from kmtl.app.registry import describe, recipe_names, resolve


class _Parser(argparse.ArgumentParser):
    """Reports bad arguments as one line, `kmtl: error: ...`, and exits with status 2."""

    def error(self, message):
        # `prog` is "kmtl" for the main parser and "kmtl train" for a command's.
        self.exit(2, f"kmtl: error: {message} (see `{self.prog} --help`)\n")


def _number(parse, accept, expected):
    """An argparse type: `parse(text)`, refused with "expected <expected>, got '<text>'" unless `accept(value)`."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_seed = _number(int, lambda v: 0 <= v < 2**32, "an integer from 0 to 2**32 - 1")
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_fraction = _number(float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
_label_fraction = _number(float, lambda v: 0 < v <= 1, "fractions in (0, 1]")


def _fractions(text: str) -> list[float]:
    """A comma-separated list of label fractions in (0, 1], e.g. "1,0.3,0.1"."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of fractions in (0, 1], got {text!r}")
    try:
        return [_label_fraction(part) for part in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of fractions in (0, 1], got {text!r}") from None


def _weighting(text: str) -> str:
    # The strategies are known once kmtl.weighting (and so Keras) is imported: only when the option is given.
    from kmtl.weighting import STRATEGIES

    if text not in STRATEGIES:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(sorted(STRATEGIES))})")
    return text


def _add_common(command, *, epochs_help: str) -> None:
    command.add_argument("recipe", choices=recipe_names(), help="recipe name (see `kmtl recipes`)")
    command.add_argument("--epochs", type=_positive_int, help=epochs_help)
    command.add_argument("--quick", action="store_true", help="tiny data and model, one epoch: a smoke run")
    command.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    command.add_argument("--batch-size", type=_positive_int, help="batch size (default: the recipe's)")
    command.add_argument(
        "--data", dest="source", metavar="SOURCE",
        help="data source: synthetic (default), celeba:PATH, utkface:PATH (facial-attributes); "
        "mimic3:PATH, pbcseq (clinical-timeseries); folder:PATH, fashion-mnist (segmentation-classification); "
        "turkish-treebank, hironsan, conll2000:PATH, conll2003:PATH, conllu:PATH, A+B mixes them (nlp-tagging); "
        "sleepstudy (mixed-effects); macrodata (forecasting); fashion-mnist (domain-adversarial)",
    )
    command.add_argument("--layout", choices=("hierarchy", "flat"),
                         help="tasks at their levels or all on the top level (nlp-tagging)")
    command.add_argument("--crf", action="store_true", default=None,
                         help="a linear-chain CRF on the span tasks, or on every task without spans (nlp-tagging)")
    command.add_argument("--char-features", action="store_true", default=None,
                         help="a character CNN per token beside the word embeddings (nlp-tagging)")
    command.add_argument("--mask-fraction", type=_fraction, metavar="F",
                         help="fraction of training images that keep their mask (segmentation-classification)")
    command.add_argument("--reconstruction", action="store_true", default=None,
                         help="add the auxiliary input-reconstruction decoder (segmentation-classification)")
    command.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                         help="set any data or model setting the recipe declares, e.g. --set num_train=1000 "
                         "(repeatable; parsed to the setting's type; a bad key lists the valid ones)")
    command.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="progress output (default: 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kmtl", description="Multi-task learning recipes for Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("recipes", help="list the available recipes")

    train = commands.add_parser("train", help="train a recipe, print per-task metrics and export it")
    _add_common(train, epochs_help="training epochs (default: the recipe's)")
    train.add_argument("--weighting", type=_weighting, help="task weighting, e.g. equal, uncertainty, static, dwa, "
                       "pcgrad (default: the recipe's)")
    train.add_argument("--learning-rate", type=_positive_float, help="Adam learning rate (default: the recipe's)")
    export = train.add_mutually_exclusive_group()
    export.add_argument("--export-dir", help="export root (default: saved_models; a --quick run exports only when "
                        "this is given, to <dir>/<recipe>_quick/)")
    export.add_argument("--no-export", action="store_true", help="train and report only")
    train.add_argument("--model", help="model of a recipe with several (clinical-timeseries: channelwise, lstm)")

    compare = commands.add_parser("compare", help="compare a recipe's multi-task model with single-task models")
    _add_common(compare, epochs_help="training epochs of every model (default: the recipe's)")
    compare.add_argument("--repeats", type=_positive_int, default=1,
                         help="paired repeats (seeds) to average over; 3 or more give intervals and tests (default: 1)")
    compare.add_argument("--resplit", action="store_true",
                         help="each repeat also draws a new data split (by patient where the recipe splits by group)")
    compare.add_argument("--folds", type=_number(int, lambda v: v >= 2, "an integer >= 2"), metavar="K",
                         help="each seed runs K repeats, one per grouped fold (recipes with a `fold` data setting)")
    compare.add_argument("--label-fraction", dest="label_fractions", type=_fractions, metavar="F[,F...]",
                         help="compare at each fraction of training labels kept per task, e.g. 1,0.3,0.1,0.03")
    compare.add_argument("--plot", metavar="PATH.png", help="with --label-fraction: plot Δm against the fraction")
    compare.add_argument("--no-classical", dest="classical", action="store_false",
                         help="leave out the classical reference models (scikit-learn logistic/ridge regression)")
    compare.add_argument("--tune-trials", type=_positive_int, metavar="N",
                         help="tune the multi-task model and each single-task model with N random-search trials each "
                         "(same epochs and data) and train every repeat with each model's best values")

    tune = commands.add_parser("tune", help="search a recipe's hyper-parameters with keras-tuner")
    _add_common(tune, epochs_help="epochs per trial (default: the recipe's)")
    tune.add_argument("--max-trials", type=_positive_int, required=True, help="trials in all")
    tune.add_argument("--directory", default="tuning", help="root of search folders (default: tuning)")
    tune.add_argument("--tuner", choices=("random", "bayesian"), default="random", help="search (default: random)")
    existing = tune.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the search found in the folder")
    existing.add_argument("--overwrite", action="store_true", help="delete the search found in the folder first")

    group = commands.add_parser("group", help="measure task affinity in a short joint training and suggest which "
                                "tasks share a branch (kmtl.grouping)")
    _add_common(group, epochs_help="epochs of the measured joint training (default: 1)")
    group.add_argument("--method", choices=("lookahead", "gradient"), default="lookahead",
                       help="affinity: loss change after a lookahead step (Fifty et al. 2021) or gradient cosine")
    group.add_argument("--groups", dest="num_groups", type=_positive_int, metavar="K",
                       help="exactly K groups (default: the best number)")
    group.add_argument("--levels", type=_positive_int, default=1,
                       help="depths at which branches split: 2 also gathers groups into groups of groups (default: 1)")
    group.add_argument("--lookahead-rate", type=_positive_float, default=0.01, help="lookahead step (default: 0.01)")
    group.add_argument("--branch-units", type=_number(lambda t: tuple(int(u) for u in t.split(",")),
                       lambda v: all(u >= 1 for u in v), "positive integers, e.g. 32 or 32,16"), default=(32,),
                       help="widths of each branch's Dense layers (default: 32)")
    group.add_argument("--plot", metavar="PATH.png", help="write the affinity heatmap (never over an existing file)")
    group.add_argument("--train", action="store_true", help="train the suggested branched model and print its metrics")
    group.add_argument("--export-dir", help="with --train: export it to <dir>/<recipe>_grouped/<version>/")
    group.add_argument("--compare", action="store_true", help="train hard sharing, the suggested groups and one "
                       "branch per task on the same trunk and print their test scores")
    group.add_argument("--repeats", type=_positive_int, default=1, help="seeds of --compare (default: 1)")
    return parser


def _settings(args) -> dict:
    """The recipe settings given on the command line (None: the recipe's)."""
    names = ("epochs", "batch_size", "source", "weighting", "learning_rate", "model", "mask_fraction", "reconstruction",
             "layout", "crf", "char_features")
    settings = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.assignments:  # checked against the recipe's declared settings before any data loads
        from kmtl.app.overrides import parse_overrides

        assigned = parse_overrides(resolve(args.recipe), args.assignments)
        twice = sorted(set(assigned) & set(settings))
        if twice:
            raise ValueError(f"{', '.join(twice)} given both by --set and by its own option; give it once.")
        settings.update(assigned)
    return settings


def _run(args) -> int:
    if args.command == "recipes":
        for name, description in describe():
            print(f"{name:24s} {description}")
        return 0
    if args.command == "train":
        from kmtl.app.train import DEFAULT_EXPORT_DIR, train_recipe

        if args.no_export:
            export_dir = None
        elif args.export_dir is not None:
            export_dir = args.export_dir
        else:
            export_dir = None if args.quick else DEFAULT_EXPORT_DIR
        train_recipe(args.recipe, quick=args.quick, export_dir=export_dir, seed=args.seed, verbose=args.verbose,
                     **_settings(args))
        return 0
    if args.command == "compare":
        from kmtl.app.compare import compare_recipe

        result = compare_recipe(args.recipe, quick=args.quick, repeats=args.repeats, seed=args.seed,
                                verbose=0 if args.verbose < 2 else 2, log=print, resplit=args.resplit,
                                label_fractions=args.label_fractions, plot=args.plot, classical=args.classical,
                                tune_trials=args.tune_trials, folds=args.folds, **_settings(args))
        print()
        print(result.table())
        return 0
    if args.command == "group":
        from kmtl.app.group import group_recipe

        settings = _settings(args)
        group_recipe(args.recipe, epochs=settings.pop("epochs", 1), method=args.method, num_groups=args.num_groups,
                     levels=args.levels, lookahead_rate=args.lookahead_rate, branch_units=args.branch_units,
                     plot=args.plot, train=args.train, export_dir=args.export_dir, compare=args.compare,
                     repeats=args.repeats, quick=args.quick, seed=args.seed, verbose=args.verbose, **settings)
        return 0
    from kmtl.app.tune import tune_recipe

    tune_recipe(args.recipe, max_trials=args.max_trials, quick=args.quick, directory=args.directory,
                seed=args.seed, kind=args.tuner, resume=args.resume, overwrite=args.overwrite, verbose=args.verbose,
                **_settings(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `kmtl` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, ImportError) as error:
        message = " ".join(str(error).split())  # one line
        print(f"kmtl: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
