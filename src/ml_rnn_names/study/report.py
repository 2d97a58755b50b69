"""The report: the seed notebook's tables and figures, with the statistics and the audit, from the storage.

``write_report(campaign)`` writes ``studies/<campaign>/report/``::

    report.md              the tables (final results, comparison, search, data, test audit, environment)
    report.html            the same, self-contained: PNGs as data URIs, plotly.js inline once
    report.json            FinalizeResult.to_json(), the search's best trials, the data summary
    search_val_loss.png    validation loss per epoch of every search trial, one panel per model
    confusion_matrices.png row-normalised test confusion matrices, summed over the finalize seeds
    test_accuracy.png      test accuracy of every finalize seed, and mean ± std per model
    optuna_<model>_<kind>.html + plotly.min.js   optuna.visualization figures (no CDN: works offline)

and, unless ``dashboard=False``, puts the markdown in each model study's optuna-dashboard note and
the plotly figures in its graphs (both live in the storage, so SQLite and PostgreSQL alike). The
note is *replaced* on every run: edit the campaign, not the note.

It never trains and never evaluates the test set: finalize results are read back from the storage
(:func:`~ml_rnn_names.study.finalize.load_finalized`), so running it again changes no audit count
and, for unchanged storage, writes byte-identical ``report.md`` and ``report.json`` (no timestamps
of its own; the evaluation times are in the audit table).

**Not finalized yet** (or finalize interrupted): the report still writes what the search and the
data can say — search figures, best trials, data summary, environment — and says in its first lines
that the test results are missing and how to get them. A half-finished campaign is worth a look;
the warning makes sure nobody mistakes it for the result. ``ReportResult.finalized`` tells a caller.

Every file is written to a temporary file in the report folder and renamed over the old one, so a
failed write (disk full) leaves the previous file intact. The main documents are written last.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
import platform
import re
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ml_rnn_names.errors import MlRnnNamesError, StorageError
from ml_rnn_names.study import slots as slot_mod
from ml_rnn_names.study.checkpoints import atomic_write
from ml_rnn_names.study.finalize import FinalizeResult, final_study_name, load_finalized
from ml_rnn_names.study.storage import redact, with_retries

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    from ml_rnn_names.study.campaign import Campaign, StudyStatus
    from ml_rnn_names.study.config import CampaignConfig

log = logging.getLogger(__name__)

REPORT_DIR = "report"
VAL_LOSS = "validation loss (mean NLL, nats)"
PLOT_KINDS = {  # file suffix → (title, what it shows)
    "history": "Optimization history",
    "intermediate": "Validation loss per epoch",
    "parallel": "Parallel coordinates",
    "importances": "Hyperparameter importances",
    "slice": "Slice plot",
}
PNG_SEARCH = "search_val_loss.png"
PNG_CONFUSION = "confusion_matrices.png"
PNG_ACCURACY = "test_accuracy.png"
PLOTLY_JS = "plotly.min.js"
PNG_DPI = 110


@dataclass
class ReportResult:
    folder: Path
    files: list[Path]
    finalized: bool
    finalize_missing: str  # why there are no test results ("" when finalized)
    warnings: list[str]
    figure_problems: list[str]  # figures that could not be drawn, and why
    dashboard_studies: list[str]
    result: FinalizeResult | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------------------- documents


@dataclass
class _Doc:
    """Blocks rendered to markdown (report.md, the dashboard note) and to HTML (report.html) alike."""

    blocks: list[tuple[Any, ...]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def warn(self, text: str) -> None:
        self.blocks.append(("warn", text))

    def ul(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> None:
        """``align``: one of ``l``/``r`` per column (default: left)."""
        align = (align or "l" * len(headers)).ljust(len(headers), "l")
        self.blocks.append(("table", list(headers), [[str(c) for c in row] for row in rows], align))

    def img(self, filename: str, alt: str) -> None:
        self.blocks.append(("img", filename, alt))

    def plots(self, items: Sequence[tuple[str, str, str]]) -> None:
        """``(title, filename, key)`` per interactive figure: links in markdown, embedded in HTML."""
        self.blocks.append(("plots", list(items)))

    # -------------------------------------------------------------------------------- markdown

    def markdown(self, *, note: bool = False) -> str:
        out: list[str] = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(block[1])
            elif kind == "warn":
                out.append(f"> **Warning:** {block[1]}")
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                _, headers, rows, align = block
                cells = [[_md_cell(c) for c in row] for row in [headers, *rows]]
                out.append("| " + " | ".join(cells[0]) + " |")
                out[-1] += "\n|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
                out[-1] += "".join("\n| " + " | ".join(row) + " |" for row in cells[1:])
            elif kind == "img" and not note:
                out.append(f"![{block[2]}]({block[1]})")
            elif kind == "plots" and not note:
                out.append("\n".join(f"- [{title}]({filename})" for title, filename, _ in block[1]))
        return "\n\n".join(out) + "\n"

    # ------------------------------------------------------------------------------------ HTML

    def html(self, title: str, images: dict[str, bytes], plots: dict[str, str]) -> str:
        body: list[str] = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                level, text = block[1], block[2]
                body.append(f'<h{level} id="{_slug(text)}">{_inline(text)}</h{level}>')
            elif kind == "p":
                body.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "warn":
                body.append(f'<p class="warn"><strong>Warning:</strong> {_inline(block[1])}</p>')
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                _, headers, rows, align = block
                cls = [' class="r"' if a == "r" else "" for a in align]
                head = "".join(f"<th{c}>{_inline(h)}</th>" for h, c in zip(headers, cls, strict=True))
                lines = [
                    "<tr>"
                    + "".join(f"<td{c}>{_inline(v)}</td>" for v, c in zip(row, cls, strict=True))
                    + "</tr>"
                    for row in rows
                ]
                body.append(
                    f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                    f"<tbody>{''.join(lines)}</tbody></table></div>"
                )
            elif kind == "img":
                data = images.get(block[1])
                if data is not None:
                    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                    body.append(
                        f'<figure><img src="{uri}" alt="{html.escape(block[2])}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>"
                    )
            elif kind == "plots":
                for plot_title, _, key in block[1]:
                    if key in plots:
                        body.append(
                            f'<section class="plot" title="{html.escape(plot_title)}">{plots[key]}</section>'
                        )
        return _HTML_PAGE.format(title=html.escape(title), body="\n".join(body))


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1400px;
       margin: 2em auto; padding: 0 1.5em; color: #222; line-height: 1.45; }}
h1 {{ border-bottom: 2px solid #ddd; padding-bottom: .3em; }}
h2 {{ border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: .8em 0; font-size: .92em; }}
th, td {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
tr:nth-child(even) td {{ background: #fafafa; }}
td.r, th.r {{ text-align: right; font-variant-numeric: tabular-nums; }}
code {{ background: #f2f2f2; padding: 0 .25em; border-radius: 3px; font-size: .92em; }}
.scroll {{ overflow-x: auto; }}
.warn {{ background: #fff4e5; border-left: 4px solid #f0a020; padding: .6em .9em; }}
figure {{ margin: 1em 0; }}
figure img {{ max-width: 100%; height: auto; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: .9em; }}
section.plot {{ margin: 1.5em 0; overflow-x: auto; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def _inline(text: str) -> str:
    """The markdown subset the report emits — `code`, **bold**, [text](link) — as escaped HTML."""
    out: list[str] = []
    last = 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        code, bold, label, href = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(href)}">{html.escape(label)}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


# ------------------------------------------------------------------------------------------- format


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _pm(summary: Any, *, pct: bool) -> str:
    if pct:
        return f"{summary.mean * 100:.1f}% ± {summary.std * 100:.1f}%"
    return f"{summary.mean:.4f} ± {summary.std:.4f}"


def _ci(summary: Any, *, pct: bool) -> str:
    if summary.ci_low is None or summary.ci_high is None:
        return "— (one seed)"
    if pct:
        return f"[{summary.ci_low * 100:.1f}%, {summary.ci_high * 100:.1f}%]"
    return f"[{summary.ci_low:.4f}, {summary.ci_high:.4f}]"


def _plain(value: Any) -> Any:
    """JSON-safe data: NaN/inf → null, tuples → lists, anything else stringified."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if hasattr(value, "item"):
        return _plain(value.item())
    return str(value)


# ------------------------------------------------------------------------------------------ gather


@dataclass
class _SearchModel:
    """What the search says about one model (from its study alone)."""

    model: str
    study: optuna.Study
    status: StudyStatus
    trials: list[FrozenTrial]  # COMPLETE and PRUNED trials that count for their slot
    best: FrozenTrial | None


@dataclass
class _Gathered:
    config: CampaignConfig
    search: dict[str, _SearchModel]
    summary: dict[str, Any]
    result: FinalizeResult | None
    finalize_missing: str
    warnings: list[str]
    environment: list[tuple[str, str]]


def _counted_trials(study: optuna.Study, n_trials: int) -> list[FrozenTrial]:
    out = []
    for view in slot_mod.slot_views(study.get_trials(deepcopy=False), n_trials):
        trial = view.complete or next((t for t in view.real_trials if t.state == TrialState.PRUNED), None)
        if trial is not None:
            out.append(trial)
    return out


def _existing_study_names(storage: optuna.storages.BaseStorage) -> set[str]:
    return {s.study_name for s in with_retries(storage.get_all_studies, what="list studies")}


def _load_finalize(campaign: Campaign, existing: set[str]) -> tuple[FinalizeResult | None, str]:
    """The recorded finalize results, or why there are none. Never creates a finalize study."""
    config = campaign.config
    absent = [m for m in config.model_names if final_study_name(config, m) not in existing]
    if len(absent) == len(config.model_names):
        return None, "finalize has not run"
    if absent:
        return None, f"finalize has no results for {', '.join(absent)}"
    try:
        return load_finalized(campaign), ""
    except StorageError:
        raise
    except MlRnnNamesError as exc:  # a finalize round that was interrupted: a seed has no result yet
        return None, str(exc)


def _finalize_time_warnings(
    config: CampaignConfig,
    storage: optuna.storages.BaseStorage,
    result: FinalizeResult,
    search: dict[str, _SearchModel],
) -> list[str]:
    """Did finalize run before the search had its budget (``--allow-incomplete``), or on a stale best?

    Finalize records on its trials how many search slots were COMPLETE when the round was planned.
    """
    out = []
    for model, final in result.models.items():
        found = search[model]
        if found.best is not None and found.best.number != final.source_trial:
            out.append(
                f"finalize evaluated {model} search trial {final.source_trial} (val loss "
                f"{_num(final.source_val_loss)}), but the best {model} search trial is now "
                f"{found.best.number} (val loss {_num(found.best.value)}): run `ml-rnn-names finalize` again"
            )
    if result.incomplete:
        detail = ", ".join(f"{m} had {c} of {config.n_trials}" for m, c in result.incomplete.items())
        out.append(
            f"finalize ran with --allow-incomplete ({detail} search trials COMPLETE), so the comparison "
            "is not at equal budget"
        )
    return out


def _environment(
    campaign: Campaign,
    search: dict[str, _SearchModel],
    summary: dict[str, Any],
    result: FinalizeResult | None,
) -> list[tuple[str, str]]:
    import optuna_dashboard
    import torch

    from ml_rnn_names.study.runner import ATTR, versions

    now = versions()
    rows = [
        ("ml_rnn_names (this report)", now["ml_rnn_names"]),
        ("torch", now["torch"]),
        ("optuna", now["optuna"]),
        ("optuna-dashboard", optuna_dashboard.__version__),
        ("python", platform.python_version()),
        ("platform", platform.platform(terse=True)),
    ]
    created = {}
    hashes, fingerprints = set(), set()
    devices, threads, speeds = set(), set(), []
    for found in search.values():
        stored = found.study.user_attrs.get(ATTR) or {}
        for key, value in (stored.get("versions") or {}).items():
            created.setdefault(key, set()).add(str(value))
        hashes.add(str(found.study.user_attrs.get("config_hash", stored.get("config_hash", "?"))))
        fingerprints.add(str(found.study.user_attrs.get("data_fingerprint", "?")))
        for t in found.trials:
            if "device" in t.user_attrs:
                devices.add(str(t.user_attrs["device"]))
            if "threads" in t.user_attrs:
                threads.add(str(t.user_attrs["threads"]))
            if isinstance(t.user_attrs.get("names_per_s"), int | float):
                speeds.append(float(t.user_attrs["names_per_s"]))
    if created:
        rows.append(
            (
                "versions when the studies were created",
                ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(created.items())),
            )
        )
    if result is not None and result.audit:
        rows.append(
            (
                "ml_rnn_names at test evaluation",
                ", ".join(sorted({str(row.get("package_version")) for row in result.audit})),
            )
        )
    rows += [
        ("device (search trials)", ", ".join(sorted(devices)) or "—"),
        ("configured device", campaign.config.device),
        ("torch threads per worker (search trials)", ", ".join(sorted(threads, key=int)) or "—"),
        (
            "training throughput (median names/s per search trial)",
            f"{statistics.median(speeds):,.0f}" if speeds else "—",
        ),
        ("CUDA available here", str(torch.cuda.is_available())),
        ("config hash (studies)", ", ".join(f"`{h}`" for h in sorted(hashes))),
        ("config hash (campaign file now)", f"`{campaign.config.config_hash()}`"),
        ("data fingerprint (studies)", ", ".join(f"`{f}`" for f in sorted(fingerprints))),
        ("data fingerprint (data now)", f"`{summary.get('fingerprint', '?')}`"),
    ]
    if result is not None:
        rows.append(("data fingerprint (finalize)", f"`{result.fingerprint}`"))
    rows += [
        ("campaign file", f"`{campaign.config.source}`"),
        ("storage", f"`{redact(campaign.storage_url)}`"),
    ]
    return rows


def _gather(campaign: Campaign) -> _Gathered:
    from ml_rnn_names.data import load_splits

    config = campaign.config
    opened = campaign.open(create=False, heartbeat=False)  # raises if the campaign never ran
    statuses = {st.model: st for st in campaign.status(opened)}
    search = {}
    for model, study in opened.studies.items():
        trials = _counted_trials(study, config.n_trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        best = min(complete, key=lambda t: (t.value, t.user_attrs.get("slot", 0))) if complete else None
        search[model] = _SearchModel(model, study, statuses[model], trials, best)
    summary = load_splits(
        config.data_dir,
        validation_split=config.validation_split,
        seed=config.split_seed,
        dedupe=config.dedupe,
        include_test=False,
    ).summary
    result, missing = _load_finalize(campaign, _existing_study_names(opened.storage))
    warns: list[str] = []
    if result is None:
        warns.append(
            f"not finalized ({missing}): this report has no test results. Run "
            f"`ml-rnn-names finalize {config.source}` to retrain the best trials and evaluate test once."
        )
        incomplete = {m: f.status.complete for m, f in search.items() if f.status.complete < config.n_trials}
        if incomplete:
            detail = ", ".join(f"{m} {c}/{config.n_trials}" for m, c in incomplete.items())
            warns.append(f"the search is incomplete ({detail} COMPLETE trials)")
    else:
        warns += _finalize_time_warnings(config, opened.storage, result, search)
    searched_on = {str(f.study.user_attrs.get("data_fingerprint")) for f in search.values()}
    if searched_on != {summary.get("fingerprint")}:
        warns.append(
            f"the data at {summary.get('source')} is not what the studies were searched on (fingerprint "
            f"{str(summary.get('fingerprint'))[:12]} now, {', '.join(sorted(s[:12] for s in searched_on))} "
            "stored): the data summary below describes today's data"
        )
    return _Gathered(
        config,
        search,
        summary,
        result,
        missing,
        warns,
        _environment(campaign, search, summary, result),
    )


# ------------------------------------------------------------------------------------------ figures


def _new_figure(width: float, height: float) -> Figure:
    # A bare Figure, not pyplot: no global backend switch, no figure left open in a notebook.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight", pad_inches=0.15)
    return buffer.getvalue()


def _trial_label(trial: FrozenTrial) -> str:
    p = trial.params
    parts = []
    if "hidden_size" in p:
        parts.append(f"h={p['hidden_size']}")
    if "learning_rate" in p:
        parts.append(f"lr={p['learning_rate']:.3g}")
    if "n_batch_size" in p:
        parts.append(f"batch={p['n_batch_size']}")
    if "num_layers" in p:
        parts.append(f"layers={p['num_layers']}")
    parts += [f"{k}={_param(v)}" for k, v in sorted(p.items()) if k not in {*_LABELLED, "n_epoch"}]
    return f"slot {trial.user_attrs.get('slot', '?')}: " + ", ".join(parts)


_LABELLED = {"hidden_size", "learning_rate", "n_batch_size", "num_layers"}


def _curve(trial: FrozenTrial) -> list[float]:
    losses = trial.user_attrs.get("val_losses")
    if isinstance(losses, list) and losses:
        return [float(v) for v in losses]
    return [float(trial.intermediate_values[k]) for k in sorted(trial.intermediate_values)]


#: Above this many trials per model the legend names only the best one (a 100-row legend helps nobody).
LEGEND_MAX_TRIALS = 40


def figure_search_curves(search: dict[str, list[FrozenTrial]], best: dict[str, int | None]) -> Figure:
    """The seed's figure: one panel per model, a line per search trial (validation loss per epoch).

    The legend sits right of each panel and says slot, params and final validation loss; the best
    trial is drawn thick (and, with many trials, in red over the others)."""
    n = max(1, len(search))
    most = max((len(t) for t in search.values()), default=1)
    longest = max((len(_curve(t)) for trials in search.values() for t in trials), default=1)
    ncol = 1 if most <= 16 or most > LEGEND_MAX_TRIALS else -(-most // 20)
    fig = _new_figure(7.0 + 4.3 * ncol, 3.9 * n)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    colors = _colors(most)
    for ax, (model, trials) in zip(axes, search.items(), strict=False):
        for i, trial in enumerate(sorted(trials, key=lambda t: t.user_attrs.get("slot", t.number))):
            losses = _curve(trial)
            if not losses:
                continue
            is_best = trial.number == best.get(model)
            label = f"{_trial_label(trial)} → {losses[-1]:.3f}"
            if trial.state == TrialState.PRUNED:
                label += " (pruned)"
            if is_best:
                label += "  ◀ best"
            elif len(trials) > LEGEND_MAX_TRIALS:
                label = "_nolegend_"
            ax.plot(
                range(1, len(losses) + 1),
                losses,
                marker="o",
                markersize=6 if is_best else (4 if len(trials) <= 20 else 2.5),
                linewidth=2.6 if is_best else (1.3 if len(trials) <= 20 else 0.9),
                linestyle="--" if trial.state == TrialState.PRUNED else "-",
                alpha=1.0 if is_best else (0.75 if len(trials) <= 20 else 0.45),
                color="crimson" if is_best and len(trials) > 10 else colors[i % len(colors)],
                label=label,
                zorder=3 if is_best else 2,
            )
        ax.set_title(f"{model}: hyperparameter search ({len(trials)} trials)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(VAL_LOSS)
        # Integer epochs only; MaxNLocator(integer=True) still draws 0.8, 0.9, … around a lone epoch 1.
        ax.set_xticks(range(1, longest + 1, max(1, -(-longest // 15))))
        ax.set_xlim(0.5 if longest == 1 else 0.7, longest + (0.5 if longest == 1 else 0.3))
        ax.grid(True, alpha=0.3)
        if trials:
            title = "trial: params → final val loss"
            if len(trials) > LEGEND_MAX_TRIALS:
                title += f"\n({len(trials) - 1} other trials: thin lines)"
            ax.legend(
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                fontsize=8,
                title=title,
                title_fontsize=8,
                ncol=ncol,
            )
        else:
            ax.text(0.5, 0.5, "no finished trials yet", ha="center", va="center", transform=ax.transAxes)
    return fig


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        return list(colormaps["tab10"].colors)  # type: ignore[attr-defined]
    if n <= 20:
        return list(colormaps["tab20"].colors)  # type: ignore[attr-defined]
    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def figure_confusions(result: FinalizeResult) -> Figure:
    """Row-normalised test confusion matrices, one per model, from the counts summed over seeds."""
    import numpy as np

    from ml_rnn_names.evaluation import plot_confusion_matrix

    n = len(result.models)
    size = max(5.5, 0.3 * len(result.labels) + 2.6)
    fig = _new_figure(size * n + 0.8, size)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (model, final) in zip(axes, result.models.items(), strict=True):
        counts = np.sum([np.asarray(s.confusion, dtype=np.float64) for s in final.seeds], axis=0)
        plot_confusion_matrix(
            counts,
            result.labels,
            title=f"{model}: test set, summed over {len(final.seeds)} seeds\n"
            "(row-normalised: recall per true language)",
            ax=ax,
        )
        # The figure is shown scaled down beside its twin: ticks a little larger than the helper's 8 pt.
        ax.tick_params(labelsize=9 if len(result.labels) <= 24 else 7)
    return fig


def figure_test_accuracy(result: FinalizeResult) -> Figure:
    """Test accuracy of every finalize seed (one marker per seed, the same across models) and the
    mean ± std over seeds (error bar), per model, in %."""
    from matplotlib.ticker import PercentFormatter

    n = len(result.models)
    seeds = sorted({s.seed for m in result.models.values() for s in m.seeds})
    style = {seed: (_colors(len(seeds))[j % 20], "osD^vP*Xhp"[j % 10]) for j, seed in enumerate(seeds)}
    fig = _new_figure(max(6.0, 2.6 * n + 2.5), 4.8)
    ax = fig.subplots()
    spread = 0.28
    for i, final in enumerate(result.models.values()):
        k = len(final.seeds)
        for j, s in enumerate(final.seeds):
            x = i - 0.12 - spread / 2 + (spread * j / (k - 1) if k > 1 else spread / 2)
            color, marker = style[s.seed]
            ax.scatter(
                [x],
                [s.test_accuracy * 100],
                s=44,
                color=color,
                marker=marker,
                zorder=3,
                label=f"seed {s.seed}" if i == 0 else None,
            )
        mean, std = final.accuracy.mean * 100, final.accuracy.std * 100
        ax.errorbar(
            [i + 0.2],
            [mean],
            yerr=[std],
            fmt="_",
            color="black",
            capsize=7,
            markersize=16,
            markeredgewidth=2,
            zorder=4,
            label="mean ± std over seeds" if i == 0 else None,
        )
        ax.annotate(
            f"{mean:.1f}% ± {std:.1f}%",
            (i + 0.2, mean),
            xytext=(10, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_xticks(range(n), labels=list(result.models))
    ax.set_xlim(-0.6, n - 0.25)
    ax.set_xlabel("model (best search trial, retrained per finalize seed)")
    ax.set_ylabel("test accuracy (%)")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=1))
    ax.margins(y=0.2)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(f"Test accuracy per finalize seed ({len(result.truth)} test names)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def optuna_figures(study: optuna.Study, model: str) -> tuple[dict[str, go.Figure], list[str]]:
    """optuna.visualization figures of one search study, and what could not be drawn (and why)."""
    import optuna.visualization as vis
    from optuna.importance import FanovaImportanceEvaluator

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varying = [
        name
        for name in sorted({k for t in trials for k in t.params})
        if len({json.dumps(t.params.get(name)) for t in trials}) > 1
    ]
    makers: dict[str, Callable[[], go.Figure]] = {
        "history": lambda: vis.plot_optimization_history(study, target_name=VAL_LOSS),
        "intermediate": lambda: vis.plot_intermediate_values(study),
        "parallel": lambda: vis.plot_parallel_coordinate(study, target_name=VAL_LOSS),
        "importances": lambda: vis.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0), target_name=VAL_LOSS
        ),
        "slice": lambda: vis.plot_slice(study, target_name=VAL_LOSS),
    }
    figures: dict[str, go.Figure] = {}
    problems: list[str] = []
    for kind, make in makers.items():
        if not trials:
            problems.append(f"{model} {PLOT_KINDS[kind].lower()}: no COMPLETE search trial yet")
            continue
        if kind == "importances" and (len(trials) < 2 or not varying):
            why = (
                "fewer than 2 COMPLETE trials" if len(trials) < 2 else "no hyperparameter varies across them"
            )
            problems.append(f"{model} hyperparameter importances: not computed ({why})")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make()
        except Exception as exc:  # a figure is not worth failing the report for; say why it is missing
            problems.append(f"{model} {PLOT_KINDS[kind].lower()}: {type(exc).__name__}: {exc}")
            continue
        fig.update_layout(title=f"{model}: {PLOT_KINDS[kind]}")
        if kind == "intermediate":
            fig.update_layout(xaxis_title="epoch", yaxis_title=VAL_LOSS)
        if kind in ("history", "intermediate"):  # trial numbers and epochs are integers: no 0.5 ticks
            top = (
                max((t.number for t in trials), default=1)
                if kind == "history"
                else max((max(t.intermediate_values, default=1) for t in trials), default=1)
            )
            fig.update_xaxes(
                tickmode="linear", tick0=0 if kind == "history" else 1, dtick=max(1, -(-top // 12))
            )
        figures[kind] = fig
    return figures, problems


# ------------------------------------------------------------------------------------------ writing


def _file_mode() -> int:
    # mkstemp creates 0600 files; a report is for reading: 0666 less the umask, as open() would give.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_file(tmp: Path, data: bytes) -> None:
    """Write ``data`` to the temporary file (the test suite injects failures here)."""
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class _Writer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mode = _file_mode()
        self.written: list[Path] = []

    def __call__(self, name: str, data: bytes | str) -> Path:
        payload = data.encode("utf-8") if isinstance(data, str) else data
        path = self.folder / name

        def write(tmp: Path) -> None:
            _write_file(tmp, payload)
            os.chmod(tmp, self.mode)

        try:
            atomic_write(path, write)
        except OSError as exc:
            raise MlRnnNamesError(
                f"{path}: cannot write the report ({exc.strerror or exc}); the previous file is left "
                "intact. Free some space or fix the folder's permissions, then run `report` again"
            ) from None
        self.written.append(path)
        return path


# ------------------------------------------------------------------------------------------ document


def _build_doc(g: _Gathered, figure_problems: list[str], has: set[str], plot_items: list) -> _Doc:
    config, result = g.config, g.result
    doc = _Doc()
    models = config.model_names
    doc.h(1, f"Campaign `{config.name}`: {' vs '.join(models)}")
    if config.description:
        doc.p(config.description)
    doc.p(
        f"Campaign file `{config.source}`; {config.n_trials} search trials per model (random search, "
        f"sampler seed {config.sampler_seed}); the best trial by validation loss retrained with finalize "
        f"seeds {', '.join(map(str, config.finalize_seeds))} and evaluated once on the test set. "
        "Generated by `ml-rnn-names report` from the study storage: no training, no test evaluation."
    )
    for text in g.warnings:
        doc.warn(text)

    # ---- final results
    doc.h(2, "Final results (test set)")
    if result is None:
        doc.p(f"**Not finalized** ({g.finalize_missing}). Run `ml-rnn-names finalize {config.source}`.")
    else:
        conf = f"{config.confidence:.0%}"
        doc.table(
            ["Model", "Accuracy", "Loss", "Macro-F1", f"Accuracy {conf} CI", "Seeds"],
            [
                [
                    name,
                    _pm(m.accuracy, pct=True),
                    _pm(m.loss, pct=False),
                    _pm(m.macro_f1, pct=False),
                    _ci(m.accuracy, pct=True),
                    str(m.accuracy.n),
                ]
                for name, m in result.models.items()
            ],
            "lrrrrr",
        )
        doc.p(
            "Mean ± std over the finalize seeds (std with ddof=0, as the seed notebook's `np.std`); loss is "
            f"the mean negative log-likelihood in nats; the CI is the {conf} t-interval of the mean accuracy "
            "(ddof=1), wide with few seeds."
        )
        doc.h(3, "Per seed")
        doc.table(
            ["Model", "Seed", "Accuracy", "Loss", "Macro-F1", "Finalize trial", "Evaluated at (UTC)"],
            [
                [
                    name,
                    s.seed,
                    _pct(s.test_accuracy, 2),
                    _num(s.test_loss),
                    _num(s.test_macro_f1),
                    s.trial_number,
                    s.evaluated_at,
                ]
                for name, m in result.models.items()
                for s in m.seeds
            ],
            "lrrrrrl",
        )
        doc.h(3, "Per language (test recall and F1, mean over seeds)")
        headers = ["Language", "Test names"]
        for name in result.models:
            headers += [f"{name} recall", f"{name} F1"]
        rows = []
        for label in result.labels:
            first = next(iter(result.models.values())).seeds[0].per_class.get(label, {})
            row: list[Any] = [label, first.get("support", "—")]
            for m in result.models.values():
                recall = _mean([s.per_class.get(label, {}).get("recall") for s in m.seeds])
                f1 = _mean([s.per_class.get(label, {}).get("f1") for s in m.seeds])
                row += [_pct(recall), _num(f1, 3)]
            rows.append(row)
        doc.table(headers, rows, "lr" + "rr" * len(result.models))
        if PNG_CONFUSION in has:
            doc.img(
                PNG_CONFUSION,
                "Row-normalised test confusion matrices (counts summed over the finalize seeds)",
            )
        if PNG_ACCURACY in has:
            doc.img(PNG_ACCURACY, "Test accuracy per finalize seed, and mean ± std per model")

        # ---- comparison
        doc.h(2, "Comparison")
        if not result.comparisons:
            doc.p("One model only: nothing to compare.")
        for c in result.comparisons:
            doc.p(c.sentence())
        if result.comparisons:
            conf_c = f"{result.comparisons[0].confidence:.0%}"
            doc.table(
                [
                    "Comparison",
                    "Difference",
                    f"{conf_c} CI",
                    "Welch t",
                    "df",
                    "p (Welch)",
                    "McNemar: B alone right",
                    "A alone right",
                    "p (McNemar)",
                    "Test names",
                ],
                [
                    [
                        f"{c.b} − {c.a}",
                        f"{c.difference * 100:+.2f} pp",
                        f"[{c.ci_low * 100:+.2f}, {c.ci_high * 100:+.2f}] pp"
                        if c.ci_low is not None and c.ci_high is not None
                        else "—",
                        _num(c.welch_t, 3),
                        _num(c.welch_df, 2),
                        _p(c.welch_p),
                        c.mcnemar_b_only,
                        c.mcnemar_a_only,
                        _p(c.mcnemar_p),
                        c.n_names,
                    ]
                    for c in result.comparisons
                ],
                "lrrrrrrrrr",
            )
            doc.ul(
                [
                    "**Difference**: mean test accuracy of B minus that of A over the finalize seeds, in "
                    "percentage points (positive: B is better).",
                    "**CI**: the Welch–Satterthwaite t-interval of that difference "
                    "(`scipy.stats.ttest_ind(equal_var=False).confidence_interval`).",
                    "**Welch's t-test**: two-sided, unequal variances, over the per-seed test accuracies; "
                    "with a handful of seeds per model it has little power.",
                    "**Exact McNemar test**: a two-sided binomial test (`scipy.stats.binomtest`) on the test "
                    "names that only one model gets right, using each model's majority vote over its seeds "
                    "(ties: the smallest label index). Both models classify the same names, so the test is "
                    "paired; it says whether the models differ on these names, not over retraining.",
                ]
            )

    # ---- search
    doc.h(2, "Hyperparameter search")
    params = sorted({k for f in g.search.values() for t in f.trials for k in t.params})
    rows = []
    for model, f in g.search.items():
        b = f.best
        if b is None:
            rows.append([model, "—", "—", "—", "—", *["—"] * len(params)])
            continue
        rows.append(
            [
                model,
                b.number,
                b.user_attrs.get("slot", "?"),
                _num(b.value),
                _pct(b.user_attrs.get("val_accuracy")),
                *[_param(b.params[p]) if p in b.params else "—" for p in params],
            ]
        )
    doc.p("Best trial per model, by final-epoch validation loss (ties: the lowest slot):")
    doc.table(
        ["Model", "Search trial", "Slot", "Val loss", "Val accuracy", *params],
        rows,
        "lrrrr" + "r" * len(params),
    )
    if result is not None:
        doc.p(
            "Finalize retrained "
            + "; ".join(
                f"{name}: search trial {m.source_trial} (slot {m.source_slot}, "
                f"val loss {_num(m.source_val_loss)}), round {m.round}"
                for name, m in result.models.items()
            )
            + "."
        )
    doc.table(
        ["Study", "Budget", "Complete", "Pruned", "Failed", "Running", "Waiting", "Retried failures"],
        [
            [
                f.status.study_name,
                f.status.n_trials,
                f.status.complete,
                f.status.pruned,
                f.status.failed_final,
                f.status.running,
                f.status.waiting,
                max(0, f.status.failed_attempts - f.status.failed_final),
            ]
            for f in g.search.values()
        ],
        "lrrrrrrr",
    )
    if PNG_SEARCH in has:
        doc.img(PNG_SEARCH, "Validation loss per epoch of every search trial (the best trial drawn thick)")

    # ---- data
    _data_section(doc, g.summary)

    # ---- audit
    doc.h(2, "Test audit")
    if result is None:
        doc.p("No test evaluation is recorded: finalize has not produced results for every model.")
    else:
        doc.p(
            f"**{result.audit_count} test evaluations recorded** (every COMPLETE finalize trial is one; "
            "re-running finalize reuses them, `--force` adds a round)."
        )
        doc.table(
            [
                "Evaluated at (UTC)",
                "Model",
                "Seed",
                "Round",
                "Source trial",
                "Finalize trial",
                "Data fingerprint",
                "Version",
            ],
            [
                [
                    row.get("evaluated_at"),
                    row.get("model"),
                    row.get("seed"),
                    row.get("round"),
                    row.get("source_trial"),
                    row.get("finalize_trial"),
                    f"`{str(row.get('data_fingerprint'))[:16]}`",
                    row.get("package_version"),
                ]
                for row in result.audit
            ],
            "llrrrrll",
        )

    # ---- environment
    doc.h(2, "Environment")
    doc.table(["What", "Value"], [[k, v] for k, v in g.environment])

    # ---- interactive figures
    doc.h(2, "Interactive search figures")
    doc.p(
        "optuna.visualization figures of each model's search study (also in the study's graphs in "
        "`ml-rnn-names dashboard`). The files use the `plotly.min.js` beside them: no internet needed. "
        f"The importances are fANOVA estimates over {config.n_trials} trials per model"
        + (": with so few trials, read them as a hint, not a measurement." if config.n_trials < 30 else ".")
    )
    doc.plots(plot_items)
    if figure_problems:
        doc.p("Not drawn:")
        doc.ul(figure_problems)
    return doc


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None


def _data_section(doc: _Doc, s: dict[str, Any]) -> None:
    doc.h(2, "Data")
    sizes = s.get("split_sizes", {})
    total = sum(sizes.values()) or 1
    dedupe = f"on, {s.get('removed_by_dedupe')} duplicate lines removed" if s.get("dedupe") else "off"
    doc.p(
        f"`{s.get('source')}`: {s.get('lines_read', '?')} lines read, {s.get('names_kept', '?')} names "
        f"kept in {len(s.get('labels', []))} languages ({s.get('dropped_empty_after_folding', 0)} dropped "
        f"as empty after folding to ASCII, {s.get('names_changed_by_folding', 0)} changed by it); "
        f"split seed {s.get('split_seed')}, validation/test share {s.get('validation_split')} each; "
        f"dedupe {dedupe}."
    )
    doc.table(
        ["Split", "Names", "Share"],
        [[part, n, _pct(n / total)] for part, n in sizes.items()],
        "lrr",
    )
    doc.h(3, "Names per language")
    repeated = s.get("most_repeated_per_label", {})
    doc.table(
        ["Language", "Names", "Most repeated within the language"],
        [
            [label, n, ", ".join(f"{name} ×{count}" for name, count in repeated.get(label, [])) or "—"]
            for label, n in s.get("names_per_class", {}).items()
        ],
        "lrl",
    )
    doc.h(3, "Duplicates and leakage")
    several = s.get("examples_under_several_labels", [])
    doc.ul(
        [
            f"**Repeated lines**: {s.get('distinct_lines_repeated', 0)} distinct lines occur more than once "
            "in the data files, byte for byte, under one language or several.",
            f"**Duplicates within a language**: {s.get('duplicate_lines_within_class', 0)} lines repeat a "
            "name already listed under the same language "
            f"({s.get('distinct_duplicated_names', 0)} distinct names); the most repeated per language are "
            "in the table above.",
            f"**Names under several languages**: {s.get('names_under_several_labels', 0)}"
            + (
                " — e.g. " + "; ".join(f"{name} ({', '.join(labels)})" for name, labels in several)
                if several
                else ""
            )
            + ". A name listed under several languages cannot always be classified right.",
        ]
    )
    doc.table(
        ["Split", "Names also in train (any language)", "Same name and language also in train", "Split size"],
        [
            [
                part,
                s.get(f"{part}_names_in_train", "—"),
                s.get(f"{part}_pairs_in_train", "—"),
                sizes.get(part, "—"),
            ]
            for part in ("val", "test")
        ],
        "lrrr",
    )
    doc.p(f"Data fingerprint (labels, names and split membership): `{s.get('fingerprint')}`.")


# -------------------------------------------------------------------------------------------- main


def write_report(campaign: Campaign, *, dashboard: bool = True) -> ReportResult:
    """Write ``<study_dir>/report/`` (and, with ``dashboard``, each study's note and graphs)."""
    g = _gather(campaign)
    config, result = g.config, g.result
    folder = config.study_dir / REPORT_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlRnnNamesError(f"{folder}: cannot create the report folder ({exc.strerror})") from None
    write = _Writer(folder)
    images: dict[str, bytes] = {}

    search_trials = {m: f.trials for m, f in g.search.items()}
    best = {m: (f.best.number if f.best is not None else None) for m, f in g.search.items()}
    figures: list[tuple[str, Callable[[], Figure]]] = [
        (PNG_SEARCH, lambda: figure_search_curves(search_trials, best))
    ]
    if result is not None:
        figures += [
            (PNG_CONFUSION, lambda: figure_confusions(result)),
            (PNG_ACCURACY, lambda: figure_test_accuracy(result)),
        ]
    for name, make in figures:
        images[name] = _png(make())
        write(name, images[name])

    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    figure_problems: list[str] = []
    plot_items: list[tuple[str, str, str]] = []
    embedded: dict[str, str] = {}
    by_study: dict[str, dict[str, go.Figure]] = {}
    js = get_plotlyjs().encode("utf-8")
    js_path = folder / PLOTLY_JS
    if not js_path.is_file() or js_path.read_bytes() != js:
        write(PLOTLY_JS, js)
    else:
        write.written.append(js_path)
    for model, found in g.search.items():
        figs, problems = optuna_figures(found.study, model)
        figure_problems += problems
        by_study[model] = figs
        for kind, fig in figs.items():
            key = f"{model}-{kind}"
            filename = f"optuna_{_slug(model)}_{kind}.html"
            page = pio.to_html(fig, include_plotlyjs="directory", full_html=True, div_id=f"plot-{key}")
            write(filename, page)
            plot_items.append((f"{model}: {PLOT_KINDS[kind]}", filename, key))
            embedded[key] = pio.to_html(
                fig,
                include_plotlyjs=not embedded,  # plotly.js inline once, before the first figure
                full_html=False,
                div_id=f"plot-{key}",
                default_height="520px",
            )

    doc = _build_doc(g, figure_problems, set(images), plot_items)
    markdown = doc.markdown()
    payload = {
        "campaign": config.name,
        "finalized": result is not None,
        "finalize_missing": g.finalize_missing,
        "warnings": g.warnings,
        "finalize": result.to_json() if result is not None else None,
        "search": {
            m: {
                "study": f.status.study_name,
                "budget": config.n_trials,
                "complete": f.status.complete,
                "pruned": f.status.pruned,
                "failed": f.status.failed_final,
                "best": None
                if f.best is None
                else {
                    "trial": f.best.number,
                    "slot": f.best.user_attrs.get("slot"),
                    "val_loss": f.best.value,
                    "val_accuracy": f.best.user_attrs.get("val_accuracy"),
                    "params": f.best.params,
                },
            }
            for m, f in g.search.items()
        },
        "data_summary": g.summary,
        "environment": dict(g.environment),
        "figures_not_drawn": figure_problems,
    }
    write("report.json", json.dumps(_plain(payload), indent=2, ensure_ascii=False) + "\n")
    write("report.md", markdown)
    title = f"{config.name}: {' vs '.join(config.model_names)} report"
    write("report.html", doc.html(title, images, embedded))

    # Figures this run could not make (not finalized) must not linger from an earlier report.
    for stale in (PNG_CONFUSION, PNG_ACCURACY):
        if stale not in images:
            (folder / stale).unlink(missing_ok=True)
    for old in folder.glob("optuna_*.html"):
        if old not in write.written:
            old.unlink(missing_ok=True)

    noted: list[str] = []
    if dashboard:
        note = _note_header(folder) + doc.markdown(note=True)
        for model, found in g.search.items():
            save_dashboard(found.study, note, by_study.get(model, {}))
            noted.append(found.study.study_name)
    return ReportResult(
        folder=folder,
        files=sorted(set(write.written)),
        finalized=result is not None,
        finalize_missing=g.finalize_missing,
        warnings=g.warnings,
        figure_problems=figure_problems,
        dashboard_studies=noted,
        result=result,
    )


def _note_header(folder: Path) -> str:
    return (
        f"*Written by `ml-rnn-names report`; replaced on every run. Figures: `{folder}` (report.html); "
        "the interactive ones are also this study's graphs.*\n\n"
    )


def save_dashboard(study: optuna.Study, note: str, figures: dict[str, go.Figure]) -> None:
    """The report as the study's optuna-dashboard note, and its figures as the study's graphs.

    Graph ids are fixed per kind (``report-history``, …), so a second run replaces, never adds.
    """
    import optuna_dashboard

    if optuna_dashboard.get_note(study) != note:
        with_retries(
            lambda: optuna_dashboard.save_note(study, note), what=f"save the note of {study.study_name}"
        )
    for kind, fig in figures.items():
        with_retries(
            lambda f=fig, k=kind: optuna_dashboard.save_plotly_graph_object(
                study, f, graph_object_id=f"report-{k}"
            ),
            what=f"save the {kind} graph of {study.study_name}",
        )


def format_summary(report: ReportResult) -> str:
    """What the CLI prints: the folder, the files, and anything the reader must not miss."""
    lines = [f"report written to {report.folder}/"]
    lines += [f"  {p.name}" for p in report.files]
    if report.dashboard_studies:
        lines.append("dashboard notes and graphs updated: " + ", ".join(report.dashboard_studies))
    for problem in report.figure_problems:
        lines.append(f"not drawn: {problem}")
    for text in report.warnings:
        lines.append(f"warning: {text}")
    return "\n".join(lines)


__all__ = [
    "ReportResult",
    "figure_confusions",
    "figure_search_curves",
    "figure_test_accuracy",
    "format_summary",
    "optuna_figures",
    "save_dashboard",
    "write_report",
]
