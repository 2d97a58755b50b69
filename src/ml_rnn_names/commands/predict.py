"""``predict``: the top languages of some names, averaged over the finalized seed models."""

from __future__ import annotations

import argparse
from typing import Any

from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.predict import predict


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "predict", parents=[common], help="top languages of NAME... (finalized models)"
    )
    parser.add_argument("names", nargs="+", metavar="NAME")
    parser.add_argument("--model", help="which model (default: the campaign's last model, e.g. LSTM)")
    parser.add_argument("--top", type=_positive, default=3, help="how many languages to show (default 3)")
    parser.set_defaults(func=cmd_predict)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_predict(args: argparse.Namespace) -> int:
    campaign = Campaign.from_toml(args.campaign, overrides=args.overrides, storage=args.storage)
    model = args.model or campaign.config.model_names[-1]
    for prediction in predict(campaign, args.names, model=model, top=args.top):
        ranked = ", ".join(f"{label} {p:.1%}" for label, p in prediction.top)
        print(f"{prediction.name}: {ranked}  [{model}, {len(campaign.config.finalize_seeds)} seeds]")
    return 0
