"""The disk fills up (ENOSPC) while finalize saves a seed's checkpoint or copies it into the artifact
store. The writes of a single file (checkpoint, report) are covered where they live —
``tests/test_checkpoints.py`` and ``tests/test_report.py``: a failed write leaves the previous file.
Here the fault hits a running finalize: the attempt fails with the reason recorded, the slot re-runs
once, every checkpoint a result points to is whole, and the numbers are the uninterrupted run's.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import MODELS, SEEDS, fault_campaign, final_results
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from ml_rnn_names.study import Campaign
from ml_rnn_names.study import finalize as finalize_mod
from ml_rnn_names.study.artifacts import artifact_dir
from ml_rnn_names.study.checkpoints import load_checkpoint
from ml_rnn_names.study.finalize import finalize_campaign
from study_helpers import copy_sqlite, load_trials, sqlite_url

DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["checkpoint", "artifact-store"])
def test_disk_full_once_during_finalize_costs_one_attempt(
    where: str, reference, tmp_path: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = fault_campaign(tmp_path, tiny_data_dir)
    db = copy_sqlite(reference.search_db, tmp_path / "tiny.db")
    campaign = Campaign.from_toml(toml)
    failed: list[int] = []

    if where == "checkpoint":
        real_save = finalize_mod.save_checkpoint

        def save(payload: dict[str, Any], path: Path) -> None:
            if payload["model"] == "RNN" and payload["seed"] == SEEDS[1] and not failed:
                failed.append(payload["seed"])
                raise DISK_FULL
            real_save(payload, path)

        monkeypatch.setattr(finalize_mod, "save_checkpoint", save)
    else:
        real_write = FileSystemArtifactStore.write

        def write(self: FileSystemArtifactStore, artifact_id: str, body: Any) -> None:
            if not failed:  # the first copy into the store: half of it lands, then the disk is full
                failed.append(1)
                data = body.read()
                with open(Path(self._base_path) / artifact_id, "wb") as handle:
                    handle.write(data[: len(data) // 2])
                raise DISK_FULL
            real_write(self, artifact_id, body)

        monkeypatch.setattr(FileSystemArtifactStore, "write", write)

    result = finalize_campaign(campaign)
    assert failed
    n_final = len(MODELS) * len(SEEDS)
    assert result.audit_count == n_final
    assert final_results(sqlite_url(db)) == reference.final

    attempts, referenced = [], set()
    for model in MODELS:
        for trial in load_trials(sqlite_url(db), f"tiny/{model}/finalize"):
            if trial.state == TrialState.FAIL:
                attempts.append(trial)
                assert trial.user_attrs["fail_kind"] == "error"
                assert "No space left on device" in trial.user_attrs["fail_reason"]
                assert "checkpoint_artifact_id" not in trial.user_attrs
            else:
                assert trial.state == TrialState.COMPLETE
                artifact = trial.user_attrs["checkpoint_artifact_id"]
                referenced.add(artifact)
                checkpoint = load_checkpoint(artifact_dir(campaign.config) / artifact)  # whole, loadable
                assert (checkpoint["model"], checkpoint["seed"]) == (model, trial.user_attrs["seed"])
    assert len(attempts) == 1  # one attempt lost; its slot re-ran with the same seed
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary checkpoint is left behind
    # the half-copied artifact stays in the store (optuna's store writes in place), but no result
    # points to it: it is an orphan file, never a checkpoint anyone loads
    stored = {p.name for p in artifact_dir(campaign.config).iterdir()}
    assert referenced <= stored
    assert len(stored - referenced) == (1 if where == "artifact-store" else 0)
