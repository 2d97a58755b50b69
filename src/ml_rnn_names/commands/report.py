"""``report``: tables, figures and dashboard notes from the storage (no training, no test evaluation)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "report",
        parents=[common],
        help="write studies/<campaign>/report/ (markdown, HTML, JSON, figures) and the dashboard notes",
        description="Write the campaign's report from the study storage: the final table, the comparison "
        "statistics, the search, the data summary, the test audit and the environment, as report.md, a "
        "self-contained report.html, report.json and PNG / plotly figures in studies/<campaign>/report/; "
        "and put the markdown in each model study's optuna-dashboard note. It never trains nor evaluates "
        "a model. Before finalize it writes the search and data parts and says finalize is missing.",
    )
    parser.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        help="do not write the study notes and graphs into the storage (files only)",
    )
    parser.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ml_rnn_names.study.campaign import Campaign
    from ml_rnn_names.study.finalize import format_results
    from ml_rnn_names.study.report import format_summary, write_report

    campaign = Campaign.from_toml(args.campaign, overrides=args.overrides, storage=args.storage)
    report = write_report(campaign, dashboard=args.dashboard)
    if report.result is not None:
        print(format_results(report.result))
        print()
    print(format_summary(report))
    if not report.finalized:
        print(
            f"note: {report.finalize_missing}; the report has the search and the data only",
            file=sys.stderr,
        )
    return 0
