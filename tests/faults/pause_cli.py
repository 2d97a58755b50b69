"""``python pause_cli.py POINT SKIP MARKER CLI-ARGS…``: the real CLI, frozen at one exact point.

The fault tests SIGKILL a worker at chosen points of its life. Polling the database from outside can
only guess where the process is; this runs ``ml_rnn_names.cli.main(CLI-ARGS)`` unchanged, except that
the ``SKIP + 1``-th time the process reaches POINT it writes MARKER (a line of JSON saying where) and
waits there until it is killed (or until ``MARKER.go`` exists). Nothing else differs, so what the kill
leaves behind is exactly what a crash at that point leaves.

Points:

* ``search-epoch``: a search trial has reported an epoch and has epochs to go (mid-training);
* ``search-told``: a search trial's result was just stored as COMPLETE (nothing else done yet);
* ``claimed``: a WAITING trial was just moved to RUNNING by this worker (the claim, between trials);
* ``final-epoch``: a finalize trial finished its first epoch of retraining (mid-training);
* ``final-tested``: a finalize trial has evaluated the test split; nothing about it is recorded yet.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from ml_rnn_names import cli
from ml_rnn_names.study import finalize, runner

POINTS = ("search-epoch", "search-told", "claimed", "final-epoch", "final-tested")


def main(argv: list[str]) -> int:
    point, skip, marker, cli_args = argv[0], int(argv[1]), Path(argv[2]), argv[3:]
    if point not in POINTS:
        raise SystemExit(f"unknown point {point!r}; one of {POINTS}")
    seen = 0

    def reached(**where: Any) -> None:
        nonlocal seen
        seen += 1
        if seen <= skip:
            return
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(json.dumps({"point": point, "pid": os.getpid(), **where}), encoding="utf-8")
        tmp.replace(marker)  # the test sees the whole line or nothing
        release = marker.with_name(marker.name + ".go")
        while not release.exists():  # frozen here until SIGKILL (or released)
            time.sleep(0.05)

    if point == "search-epoch":
        real_report = optuna.trial.Trial.report

        def report(self: optuna.trial.Trial, value: float, step: int) -> None:
            real_report(self, value, step)
            if step < int(self.params["n_epoch"]):
                reached(trial=self.number, slot=self.user_attrs.get("slot"), epoch=step)

        optuna.trial.Trial.report = report  # type: ignore[method-assign]
    elif point == "search-told":
        real_tell = optuna.study.Study.tell

        def tell(self: optuna.Study, trial: Any, *args: Any, **kwargs: Any) -> Any:
            frozen = real_tell(self, trial, *args, **kwargs)
            reached(study=self.study_name, trial=frozen.number, state=frozen.state.name)
            return frozen

        optuna.study.Study.tell = tell  # type: ignore[method-assign]
    elif point == "claimed":
        real_try = runner._try_running

        def try_running(storage: Any, trial_id: int) -> bool:
            won = real_try(storage, trial_id)
            if won:
                reached(trial_id=trial_id)
            return won

        runner._try_running = try_running
    elif point == "final-epoch":
        real_train = finalize.train_params

        def train_params(*args: Any, **kwargs: Any) -> Any:
            def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
                if epoch == 1:
                    reached(seed=kwargs.get("seed"), epoch=epoch)

            return real_train(*args, **kwargs, on_epoch=on_epoch)

        finalize.train_params = train_params
    elif point == "final-tested":
        real_predict = finalize.predict_log_probs

        def predict_log_probs(model: Any, data: Any) -> Any:
            out = real_predict(model, data)
            reached(n_test=len(data))
            return out

        finalize.predict_log_probs = predict_log_probs
    return cli.main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
