"""``ml-rnn-names``: run | status | config | data | finalize | report | predict | dashboard.

The CLI decides what the user sees: progress bars and tables here, logging inside the library.
Expected failures (bad config, bad data, storage problems) print one clear message and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ml_rnn_names.errors import MlRnnNamesError

#: Modules that add subcommands: each has ``add_parser(subparsers, common)`` setting ``func``.
COMMAND_MODULES = (
    "ml_rnn_names.commands.search",
    "ml_rnn_names.commands.finalize",
    "ml_rnn_names.commands.report",
    "ml_rnn_names.commands.predict",
    "ml_rnn_names.commands.dashboard",
)


def common_parser() -> argparse.ArgumentParser:
    """Options every campaign command takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("campaign", help="campaign TOML file, e.g. studies/rnn_vs_lstm.toml")
    common.add_argument(
        "--storage",
        metavar="URL",
        help="SQLAlchemy URL of the study storage (default: $ML_RNN_NAMES_STORAGE, else the SQLite file "
        "beside the campaign file)",
    )
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a campaign key, e.g. --set campaign.n_trials=3 (repeatable; values are TOML)",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars; log lines only")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml-rnn-names",
        description="Optuna studies comparing a character-level RNN and LSTM on the names data.",
    )
    from ml_rnn_names import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_parser()
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a command not built yet
            raise
        module.add_parser(subparsers, common)
    return parser


def configure_logging(args: argparse.Namespace) -> None:
    """Bars by default (library INFO lines would tear them); ``-q``: a log line per trial; ``-v``: debug."""
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif getattr(args, "quiet", False):
        level = logging.INFO
    else:
        level = logging.WARNING
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args)
    try:
        return int(args.func(args) or 0)
    except MlRnnNamesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: the running trial is recorded as interrupted; run again to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
