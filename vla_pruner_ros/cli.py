"""``vla-pruner``: the project's command line, a dispatcher. Each command's arguments and body live beside
the code it drives: ``model/cli.py`` (info), ``bench/cli.py`` (bench, bench-papers, bench-node),
``replay/cli.py`` (replay, play), ``sim/cli.py`` (sim, eval, failures), ``train/cli.py`` (train, probe),
``params_cli.py`` (params) and ``demo.py`` (demo); shared argument types in ``cli_args.py``. Registering
the commands imports no torch, ROS or MuJoCo; each command imports what it drives when it runs.

Errors in what the user gave (a path, a parameter) print one line naming the value and exit with
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import demo, params_cli
from .bench import cli as bench_cli
from .demo import SAMPLE_EPISODE  # noqa: F401 (the shipped episode, named where the demo is run from)
from .errors import VLAPrunerError
from .model import cli as model_cli
from .replay import cli as replay_cli
from .sim import cli as sim_cli
from .train import cli as train_cli

COMMANDS = (model_cli, bench_cli, replay_cli, sim_cli, train_cli, params_cli, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-pruner", description="Visual token pruning for VLA policies.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    # The package's own errors and a path that does not exist are the user's to fix: one line. Any
    # other exception is a bug and keeps its traceback.
    errors = (VLAPrunerError, FileNotFoundError, NotADirectoryError, FileExistsError)
    try:
        return args.func(args)
    except errors as err:
        print(f"vla-pruner {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
