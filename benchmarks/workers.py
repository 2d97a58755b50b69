"""Worker scaling: trials/hour of a small campaign with 1 and 2 workers, and the storage overhead.

    python benchmarks/workers.py [--trials 6] [--epochs 2] [--data DIR]

Runs the same small campaign (RNN and LSTM, fixed architecture so every trial costs the same) into
fresh SQLite files, once with 1 worker × 1 thread and once with 2 workers × 1 thread, and prints:

* trials/hour for each, and the ratio (target on a 2-core machine: ≥ 1.8×);
* Optuna/storage overhead: the part of the wall time not spent inside ``train()`` + validation
  (trial wall time from the storage minus the objective's own ``wall_time_s``, plus the gaps between
  trials), as a percentage of the trials' time (target: < 1 %);
* peak RSS of the workers (``ru_maxrss`` of the children).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

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


def run_once(folder: Path, workers: int, trials: int, epochs: int, data: Path) -> dict[str, float]:
    toml = folder / f"w{workers}.toml"
    toml.write_text(
        textwrap.dedent(CAMPAIGN.format(trials=trials, epochs=epochs, data=data)).replace(
            'name = "bench_workers"', f'name = "bench_w{workers}"'
        )
    )
    campaign = Campaign.from_toml(toml)
    _ = campaign.search_data  # load data outside the timed region, as a long campaign amortises it
    started = time.perf_counter()
    campaign.run(workers=workers)
    wall = time.perf_counter() - started
    trial_wall, inside = [], []
    for study in campaign.studies.values():
        for t in study.trials:
            if t.datetime_complete and t.datetime_start:
                trial_wall.append((t.datetime_complete - t.datetime_start).total_seconds())
                inside.append(float(t.user_attrs["wall_time_s"]))
    n = len(trial_wall)
    overhead = (sum(trial_wall) - sum(inside)) / sum(trial_wall)
    return {
        "workers": workers,
        "trials": n,
        "wall_s": wall,
        "trials_per_hour": n / wall * 3600,
        "median_trial_s": statistics.median(trial_wall),
        "overhead_in_trial_pct": 100 * overhead,
        "overhead_total_pct": 100 * (wall * workers - sum(inside)) / (wall * workers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=6, help="slots per model (default 6)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    parser.add_argument("--data", type=Path, default=None, help="names folder (default: the usual lookup)")
    args = parser.parse_args()
    data = resolve_data_dir(args.data)
    print(f"data {data}; {os.cpu_count()} CPUs; {args.trials} slots × 2 models × {args.epochs} epochs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            row = run_once(Path(tmp), workers, args.trials, args.epochs, data)
            rows.append(row)
            print(
                f"{workers} worker(s): {row['trials']} trials in {row['wall_s']:.1f}s → "
                f"{row['trials_per_hour']:.0f} trials/h (median trial {row['median_trial_s']:.1f}s); "
                f"storage overhead inside trials {row['overhead_in_trial_pct']:.2f}%, "
                f"all non-training time {row['overhead_total_pct']:.2f}%"
            )
    ratio = rows[1]["trials_per_hour"] / rows[0]["trials_per_hour"]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"2 workers / 1 worker: {ratio:.2f}× trials/hour (target ≥ 1.8×)")
    print(f"peak RSS of a worker process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
