"""``run``, ``status``, ``config`` and ``data``: the search half of the CLI."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ml_rnn_names.study.campaign import Campaign, StudyStatus
from ml_rnn_names.study.config import load_campaign
from ml_rnn_names.study.storage import redact


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    run = subparsers.add_parser(
        "run", parents=[common], help="search every model's study to its exact budget (resumes)"
    )
    run.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    run.set_defaults(func=cmd_run)

    status = subparsers.add_parser("status", parents=[common], help="a table per study: done, running, best")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    config = subparsers.add_parser("config", parents=[common], help="print the resolved campaign config")
    config.set_defaults(func=cmd_config)

    data = subparsers.add_parser("data", parents=[common], help="print the data summary and fingerprint")
    data.set_defaults(func=cmd_data)


def _campaign(args: argparse.Namespace) -> Campaign:
    return Campaign.from_toml(args.campaign, overrides=args.overrides, storage=args.storage)


def cmd_run(args: argparse.Namespace) -> int:
    campaign = _campaign(args)
    summary = campaign.run(workers=args.workers, progress=not args.quiet)
    if summary.nothing_to_do:
        print(
            f"nothing to do: every study of {campaign.config.name} already has its "
            f"{campaign.config.n_trials} slots settled ({redact(campaign.storage_url)})"
        )
    else:
        print(
            f"{campaign.config.name}: ran with {summary.workers} worker(s) × {summary.threads_per_worker} "
            f"thread(s) in {summary.wall_time_s:.1f}s"
        )
    print(format_status(summary.after))
    return 0


def format_status(rows: list[StudyStatus]) -> str:
    """One line per study. ``failed`` are settled failures; ``retried`` transient ones that re-ran."""
    columns = ("complete", "running", "waiting", "failed", "retried", "remaining")
    header = f"{'study':<24} " + " ".join(f"{c:>9}" for c in columns) + f"  {'best val loss':<19} best params"
    lines = [header, "-" * len(header)]
    for st in rows:
        counts = (
            st.complete,
            st.running,
            st.waiting,
            st.failed_final,
            st.failed_attempts - st.failed_final,
            st.remaining,
        )
        best = f"{st.best_value:.4f} (slot {st.best_slot})" if st.best_value is not None else "-"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in st.best_params.items()) or "-"
        lines.append(f"{st.study_name:<24} " + " ".join(f"{c:>9}" for c in counts) + f"  {best:<19} {params}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_status(args: argparse.Namespace) -> int:
    campaign = _campaign(args)
    rows = campaign.status()
    if args.json:
        print(json.dumps([{**row.__dict__, "remaining": row.remaining} for row in rows], indent=2))
    else:
        print(f"campaign {campaign.config.name} in {redact(campaign.storage_url)}")
        print(format_status(rows))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    config = load_campaign(args.campaign, args.overrides)
    resolved = config.resolved()
    resolved["campaign"]["storage"] = redact(args.storage or resolved["campaign"]["storage"])
    resolved["config_hash"] = config.config_hash()
    print(json.dumps(resolved, indent=2))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    campaign = _campaign(args)
    from ml_rnn_names.data import load_splits

    c = campaign.config
    splits = load_splits(
        c.data_dir,
        validation_split=c.validation_split,
        seed=c.split_seed,
        dedupe=c.dedupe,
        include_test=False,
    )
    print(json.dumps(splits.summary, indent=2))
    return 0
