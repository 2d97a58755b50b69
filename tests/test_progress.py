"""Progress bars drawn from the storage: what they count, and an ETA that is not fooled by a resume."""

from __future__ import annotations

import io
from pathlib import Path

from ml_rnn_names.study import Campaign
from ml_rnn_names.study.progress import ProgressMonitor
from study_helpers import write_campaign


def test_bars_count_settled_slots_and_a_resume_does_not_inflate_the_rate(
    tmp_path: Path, tiny_data_dir: Path, monkeypatch
) -> None:
    toml = write_campaign(tmp_path, data_dir=str(tiny_data_dir), n_trials=3)
    campaign = Campaign.from_toml(toml)
    campaign.run(max_trials=2)  # slots interleave by model: RNN 0 and LSTM 0 are done
    monkeypatch.setattr("sys.stderr", io.StringIO())  # tqdm draws there

    opened = campaign.open()
    with ProgressMonitor(opened, interval=60) as monitor:
        bars = monitor._bars
        # slots settled before this run are where the bars start, not progress made in it
        assert {model: (bar.n, bar.initial, bar.total) for model, bar in bars.items()} == {
            "RNN": (1, 1, 3),
            "LSTM": (1, 1, 3),
        }
        assert all(bar.smoothing == 0 for bar in bars.values())  # ETA from this run's average rate
        campaign.run(max_trials=1)  # RNN slot 1
        monitor.refresh()
        assert (bars["RNN"].n, bars["LSTM"].n) == (2, 1)
        assert "best " in bars["RNN"].postfix
