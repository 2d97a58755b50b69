"""``finalize``: best trial × finalize seeds → test metrics, audit, comparison."""

from __future__ import annotations

import argparse
from typing import Any

from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.finalize import finalize_campaign, format_results


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "finalize",
        parents=[common],
        help="retrain each model's best trial over the finalize seeds; evaluate test",
    )
    parser.add_argument("--workers", type=int, default=1, help="retrain in this many processes (default 1)")
    parser.add_argument(
        "--force", action="store_true", help="re-train and re-evaluate test even if results are recorded"
    )
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="finalize although a study has fewer COMPLETE trials than its budget (the report says so)",
    )
    parser.set_defaults(func=cmd_finalize)


def cmd_finalize(args: argparse.Namespace) -> int:
    campaign = Campaign.from_toml(args.campaign, overrides=args.overrides, storage=args.storage)
    result = finalize_campaign(
        campaign, workers=args.workers, force=args.force, allow_incomplete=args.allow_incomplete
    )
    print(format_results(result))
    return 0
