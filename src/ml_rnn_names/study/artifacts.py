"""The campaign's artifact store: files (checkpoints, figures) attached to trials and studies.

One place decides where they live, so what ``finalize`` uploads is what ``dashboard`` shows:
``studies/<campaign>/artifacts/`` beside the campaign file (``CampaignConfig.study_dir``).

The store is a plain folder. The study database only records artifact ids, so with several machines
on one PostgreSQL database the folder must be shared too (a network mount, or the compose file's
volume) for every machine's dashboard to open every artifact.
"""

from __future__ import annotations

from pathlib import Path

from optuna.artifacts import FileSystemArtifactStore

from ml_rnn_names.errors import StorageError
from ml_rnn_names.study.config import CampaignConfig


def artifact_dir(config: CampaignConfig) -> Path:
    """``studies/<campaign>/artifacts``: where this campaign's artifacts are stored."""
    return config.study_dir / "artifacts"


def artifact_store(config: CampaignConfig) -> FileSystemArtifactStore:
    """The campaign's :class:`optuna.artifacts.FileSystemArtifactStore` (its folder created if missing)."""
    folder = artifact_dir(config)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"{folder}: cannot create the artifact folder ({exc.strerror}); fix the permissions of "
            f"{folder.parent}"
        ) from None
    return FileSystemArtifactStore(str(folder))
