"""The ``iclr17`` console script and ``python -m iclr17``: the front door over the LightningCLI and the studies.

iclr17 fit --config classifier/mnistfc.yaml            # any LightningCLI subcommand (iclr17.cli)
iclr17 <study> --config studies/<x>.yaml run|status|table   # a study of many runs (iclr17.studies)
iclr17 results [--check true]                          # RESULTS.md's and README's tables, from the ledgers
iclr17 score-net CHECKPOINT                            # export EBGAN's I' classifier
iclr17 configs                                         # the configs shipped in the package
"""

from __future__ import annotations

import sys

from jsonargparse import CLI, ActionConfigFile, ArgumentParser

from iclr17.cli import cli, resolve_config_args, shipped_configs
from iclr17.studies import mnist_score_net, results_tables
from iclr17.studies.catalog import STUDIES
from iclr17.studies.runner import Study

STUDY_SUBCOMMANDS = ("run", "status", "table")
LIGHTNING = {
    "fit": "train a model (LightningCLI)",
    "validate": "validate a model (LightningCLI)",
    "test": "test a model (LightningCLI)",
    "predict": "predict with a model (LightningCLI)",
}
TOOLS = {
    "results": "regenerate RESULTS.md's and README.md's tables from the ledgers (--check true: fail if stale)",
    "score-net": "export EBGAN's MNIST I' classifier from a Classifier checkpoint",
    "configs": "list the configs shipped in the package",
}


def usage() -> str:
    """The front door's help: every subcommand with one line."""
    width = max(map(len, [*LIGHTNING, *TOOLS, *STUDIES])) + 2
    lines = ["usage: iclr17 SUBCOMMAND [--help] ...", "", "training (LightningCLI):"]
    lines += [f"  {name:<{width}}{text}" for name, text in LIGHTNING.items()]
    lines += ["", "studies (many runs, one ledger each: SUBCOMMAND --config FILE run|status|table):"]
    lines += [f"  {name:<{width}}{(cls.__doc__ or '').strip().splitlines()[0]}" for name, cls in STUDIES.items()]
    lines += ["", "tools:"] + [f"  {name:<{width}}{text}" for name, text in TOOLS.items()]
    return "\n".join(lines)


def study_parser(cls: type[Study], prog: str) -> ArgumentParser:
    """``prog [--config FILE] [study arguments] run|status|table [their arguments]``: the study's ``__init__``
    arguments are its config (jsonargparse, as the LightningCLI), the three subcommands its methods."""
    parser = ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--config", action=ActionConfigFile, help="the study's config file (YAML)")
    parser.add_class_arguments(cls, nested_key=None, as_positional=False)
    subcommands = parser.add_subcommands(required=False, dest="subcommand")  # --print_config needs none
    for name in STUDY_SUBCOMMANDS:
        method = ArgumentParser(description=getattr(cls, name).__doc__.strip().splitlines()[0])
        method.add_method_arguments(cls, name, as_positional=False)
        subcommands.add_subcommand(name, method, help=getattr(cls, name).__doc__.strip().splitlines()[0])
    return parser


def study_cli(cls: type[Study], args: list[str], prog: str) -> object:
    """Parse ``args`` with :func:`study_parser`, build the study from its arguments and run the subcommand."""
    parser = study_parser(cls, prog)
    config = parser.parse_args(args)
    if config.subcommand is None:
        parser.error(f"expected a subcommand: one of {', '.join(STUDY_SUBCOMMANDS)}")
    instantiate = getattr(parser, "instantiate", parser.instantiate_classes)  # renamed in jsonargparse 4.49
    init = instantiate(config)
    chosen = config.subcommand
    study = cls(**{k: v for k, v in vars(init).items() if k not in ("config", "subcommand", *STUDY_SUBCOMMANDS)})
    return getattr(study, chosen)(**vars(config[chosen]))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``iclr17`` console script and ``python -m iclr17``."""
    args = sys.argv[1:] if argv is None else list(argv)
    command, rest = (args[0], args[1:]) if args else (None, [])
    if command in (None, "-h", "--help"):
        print(usage())
    elif command == "configs":
        print("\n".join(shipped_configs()))
    elif command in STUDIES:
        study_cli(STUDIES[command], resolve_config_args(rest), prog=f"iclr17 {command}")
    elif command == "results":
        CLI(results_tables.main, args=rest, prog="iclr17 results", as_positional=False)
    elif command == "score-net":
        CLI(mnist_score_net.main, args=rest, prog="iclr17 score-net")
    elif argv is None:
        cli()
    else:
        cli(args)


if __name__ == "__main__":
    main()
