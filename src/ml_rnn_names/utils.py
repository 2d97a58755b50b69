"""Device and thread set-up (seed API: ``torch_device_setup``)."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def torch_device_setup(preferred: str | None = None) -> torch.device:
    """The best available device: ``$ML_RNN_NAMES_DEVICE`` or ``preferred`` if given, else cuda, mps, cpu."""
    choice = preferred or os.environ.get("ML_RNN_NAMES_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    log.info("using device %s", device)
    return device


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and cgroup-limited containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(n_threads: int) -> int:
    """Pin torch's intra-op thread pool to ``n_threads`` (≥ 1); returns what was set."""
    n_threads = max(1, int(n_threads))
    torch.set_num_threads(n_threads)
    return n_threads
