"""Checkpoints: ``state_dict`` + config + labels + alphabet, saved atomically, loaded weights-only.

A checkpoint holds only tensors and plain data, so ``torch.load(..., weights_only=True)`` can load
it and refuses anything else (a pickle that would run code on load is rejected, with no side effect).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ml_rnn_names import __version__
from ml_rnn_names.errors import CheckpointError
from ml_rnn_names.model import CharRecurrentClassifier, build_model
from ml_rnn_names.processing import all_letters, n_letters

FORMAT = "ml_rnn_names.checkpoint/1"


def checkpoint_payload(
    model: torch.nn.Module,
    *,
    model_name: str,
    params: dict[str, Any],
    labels: list[str],
    seed: int,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model": model_name,
        "params": dict(params),
        "labels": list(labels),
        "alphabet": all_letters,
        "seed": int(seed),
        "version": __version__,
        **extra,
    }


def atomic_write(path: Path, write: Any) -> None:
    """``write(tmp_path)`` then rename over ``path``: a failed write leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load with ``weights_only=True``; anything that is not a plain checkpoint is refused."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # UnpicklingError: disallowed globals; RuntimeError/EOFError: corrupt files
        raise _load_error(path, exc) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an ml_rnn_names checkpoint (format {FORMAT!r} expected)")
    if payload.get("alphabet") != all_letters:
        raise CheckpointError(f"{path}: saved with a different alphabet; predictions would be wrong")
    return payload


def _load_error(path: str | os.PathLike[str], exc: Exception) -> CheckpointError:
    """Say whether the file holds code-running objects or is just damaged.

    Torch's own message opens with advice to retry with ``weights_only=False``: exactly the wrong
    advice for a file that was refused because it would run code, so only its specific line is kept.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    refused = [line for line in lines if "GLOBAL" in line or "Unsupported global" in line]
    if refused:
        return CheckpointError(
            f"{path}: refused to load (weights_only=True): it holds objects other than tensors and "
            f"plain data ({refused[0]}); such a file can run code when unpickled, so do not load it "
            "with weights_only=False unless you trust where it came from"
        )
    detail = next((line for line in lines if "weights_only" not in line), type(exc).__name__).rstrip(".")
    return CheckpointError(
        f"{path}: corrupt or not a checkpoint file; torch.load (weights_only=True) failed: {detail}. "
        "Re-create it with `ml-rnn-names finalize --force`, or restore it from a copy"
    )


def model_from_checkpoint(payload: dict[str, Any]) -> CharRecurrentClassifier:
    model = build_model(
        payload["model"], n_letters=n_letters, n_classes=len(payload["labels"]), seed=0, **payload["params"]
    )
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model
