"""An example study script: the Python API instead of the CLI.

    python studies/example_study_script.py studies/smoke.toml

Runs (or resumes) the campaign with two workers, prints each model's best trial, finalizes on the
test set and prints the seed notebook's table. Every step is resumable: run it again and it only
does what is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ml_rnn_names.study import Campaign
from ml_rnn_names.study.finalize import finalize_campaign, format_results


def main(path: str) -> None:
    campaign = Campaign.from_toml(path)
    summary = campaign.run(workers=2, progress=True)
    print("nothing to do" if summary.nothing_to_do else f"searched in {summary.wall_time_s:.0f}s")

    for model, trial in campaign.best().items():
        print(
            f"{model}: best val loss {trial.value:.4f} (slot {trial.user_attrs['slot']}) with {trial.params}"
        )

    # Studies are plain Optuna studies: any Optuna API works on them.
    lstm = campaign.studies["LSTM"]
    curve = lstm.trials[0].user_attrs["val_losses"]
    print(f"{lstm.study_name}: {len(lstm.trials)} trials; the first one's val losses: {curve}")

    result = finalize_campaign(campaign, workers=2)
    print(format_results(result))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("smoke.toml")))
