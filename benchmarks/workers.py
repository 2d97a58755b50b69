"""Worker scaling: trials/hour of a small campaign with 1 and 2 workers, and the storage overhead.

    python benchmarks/workers.py [--trials 12] [--epochs 4] [--repeats 3] [--data DIR]

Runs the same small campaign (RNN and LSTM, fixed architecture so trials cost about the same) into
fresh SQLite files with 1 worker × 1 thread and then 2 workers × 1 thread, ``--repeats`` times in
turn, and prints medians (and every run) of:

* the 2-worker / 1-worker ratio of trials/hour, in steady state (first trial start to last trial
  end) and end to end (with each worker's start-up); target on a 2-core machine: ≥ 1.8×;
* Optuna/storage time: wall time inside Optuna's ``RDBStorage`` calls (the heartbeat thread's too)
  while trials ran, per trial and as a share of the trials' time (1-worker runs); target: < 1 %;
* peak RSS of the worker processes (``ru_maxrss`` of the children).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import resource
import statistics
import tempfile
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

from optuna.storages import RDBStorage

from ml_rnn_names.data import resolve_data_dir
from ml_rnn_names.study import Campaign

CAMPAIGN = """
[campaign]
name = "bench_workers"
n_trials = {trials}
[data]
dir = "{data}"
[search]
hidden_size = {{ choices = [64] }}
learning_rate = {{ low = 0.05, high = 0.2 }}
n_batch_size = {{ choices = [64] }}
n_epoch = {{ choices = [{epochs}] }}
[models.RNN]
[models.LSTM.search]
num_layers = {{ choices = [2] }}
[execution]
threads_per_worker = 1
heartbeat_interval = 10
"""


class StorageTimer:
    """Wall time spent inside Optuna's ``RDBStorage`` (every public method, outermost calls only, any
    thread: the heartbeat thread's writes count too). Works for the in-process (1-worker) run."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.log: list[tuple[datetime, float]] = []  # (when the call started, its duration in seconds)
        self._depth = threading.local()
        self._saved: dict[str, object] = {}

    def __enter__(self) -> StorageTimer:
        for name, fn in list(vars(RDBStorage).items()):
            if name.startswith("_") or not callable(fn):
                continue
            self._saved[name] = fn
            setattr(RDBStorage, name, self._wrap(fn))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self._saved.items():
            setattr(RDBStorage, name, fn)

    def _wrap(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            depth = getattr(self._depth, "n", 0)
            self._depth.n = depth + 1
            when, started = datetime.now(), time.perf_counter()  # naive local time, as Optuna's
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth.n = depth
                if depth == 0:
                    took = time.perf_counter() - started
                    self.seconds += took
                    self.calls += 1
                    self.log.append((when, took))

        return timed


def run_once(folder: Path, workers: int, trials: int, epochs: int, data: Path) -> dict[str, float]:
    toml = folder / f"w{workers}.toml"
    toml.write_text(
        textwrap.dedent(CAMPAIGN.format(trials=trials, epochs=epochs, data=data)).replace(
            'name = "bench_workers"', f'name = "bench_w{workers}"'
        )
    )
    campaign = Campaign.from_toml(toml)
    _ = campaign.search_data  # load data outside the timed region, as a long campaign amortises it
    timer = StorageTimer() if workers == 1 else contextlib.nullcontext()
    with timer:
        started = time.perf_counter()
        campaign.run(workers=workers)
        wall = time.perf_counter() - started
    trial_wall, starts, ends = [], [], []
    for study in campaign.studies.values():
        for t in study.trials:
            if t.datetime_complete and t.datetime_start:
                trial_wall.append((t.datetime_complete - t.datetime_start).total_seconds())
                starts.append(t.datetime_start)
                ends.append(t.datetime_complete)
    n = len(trial_wall)
    # Steady state: from the first trial's start to the last one's end, which leaves out what a long
    # campaign pays once per worker (spawning, importing torch, loading the data).
    busy = (max(ends) - min(starts)).total_seconds()
    return {
        "workers": workers,
        "trials": n,
        "wall_s": wall,
        "busy_s": busy,
        "trials_per_hour": n / wall * 3600,
        "steady_trials_per_hour": n / busy * 3600,
        "median_trial_s": statistics.median(trial_wall),
        "storage_s": timer.seconds if isinstance(timer, StorageTimer) else float("nan"),
        # only the calls made while trials ran: what each further trial costs, without the one-off
        # opening of the studies
        "storage_in_trials_s": (
            sum(took for when, took in timer.log if min(starts) <= when <= max(ends))
            if isinstance(timer, StorageTimer)
            else float("nan")
        ),
        "storage_calls": timer.calls if isinstance(timer, StorageTimer) else 0,
        "trial_s": sum(trial_wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=12, help="slots per model (default 12)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per trial (default 4)")
    parser.add_argument("--data", type=Path, default=None, help="names folder (default: the usual lookup)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved 1-worker / 2-worker pairs; medians (default 3)"
    )
    args = parser.parse_args()
    data = resolve_data_dir(args.data)
    print(
        f"data {data}; {os.cpu_count()} CPUs; {args.trials} slots × 2 models × {args.epochs} epochs; "
        f"{args.repeats} interleaved pairs"
    )
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            # 1 worker then 2, back to back: this VM's speed drifts by tens of percent over minutes, so
            # each ratio compares neighbours in time, and the medians below smooth what is left.
            pair = []
            for workers in (1, 2):
                folder = Path(tmp) / f"r{repeat}"
                folder.mkdir(exist_ok=True)
                row = run_once(folder, workers, args.trials, args.epochs, data)
                pair.append(row)
                print(
                    f"[{repeat}] {workers} worker(s): {row['trials']} trials in {row['wall_s']:.1f}s → "
                    f"{row['trials_per_hour']:.0f} trials/h end to end, "
                    f"{row['steady_trials_per_hour']:.0f} trials/h from first trial start to last trial end "
                    f"(median trial {row['median_trial_s']:.1f}s)",
                    flush=True,
                )
            pairs.append(pair)
    steady = [b["steady_trials_per_hour"] / a["steady_trials_per_hour"] for a, b in pairs]
    ratio = [b["trials_per_hour"] / a["trials_per_hour"] for a, b in pairs]
    per_trial_ms = [1000 * a["storage_in_trials_s"] / a["trials"] for a, _ in pairs]
    share = [100 * a["storage_in_trials_s"] / a["busy_s"] for a, _ in pairs]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    def spread(values: list[float], fmt: str) -> str:
        return (
            f"median {fmt.format(statistics.median(values))} ("
            + ", ".join(fmt.format(v) for v in values)
            + ")"
        )

    print()
    print(f"2 workers / 1 worker, trials/hour in steady state: {spread(steady, '{:.2f}×')} (target ≥ 1.8×)")
    print(f"2 workers / 1 worker, trials/hour end to end (with start-up): {spread(ratio, '{:.2f}×')}")
    print(
        "Optuna/storage time while trials ran (1 worker; every RDBStorage call, the heartbeat thread's "
        f"too): {spread(per_trial_ms, '{:.0f} ms')} per trial = {spread(share, '{:.2f}%')} of trial time "
        "(target < 1 %)"
    )
    print(f"peak RSS of a worker process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
