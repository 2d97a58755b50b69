"""The search space, and the slot → params function that makes studies reproducible.

Slot ``k`` of a study always gets ``params = f(search space, sampler seed, k)``: each param is drawn
by Optuna's ``RandomSampler`` from its own stream, seeded by ``(sampler_seed, k, param name)``.
Nothing about process count, completion order or interruptions can change it (Optuna's own
RandomSampler keeps its RNG in the process: after a resume it repeats configs, optuna#3255, and
with several workers it is reseeded, optuna#4412).

One stream per *param* also makes the comparison paired: slot ``k`` of the RNN and of the LSTM study
share the same values of every shared param, and adding a model-specific param shifts nothing else.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ml_rnn_names.study.config import ParamSpec


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution of a param (a fixed value is a one-choice categorical, so it shows
    in the dashboard like any other param)."""
    if spec.kind == "categorical":
        return CategoricalDistribution(list(spec.choices))
    if spec.kind == "fixed":
        return CategoricalDistribution([spec.value])
    if spec.kind == "int":
        return IntDistribution(int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))  # type: ignore[arg-type]
    return FloatDistribution(float(spec.low), float(spec.high), log=spec.log, step=spec.step)  # type: ignore[arg-type]


def space_distributions(space: Iterable[ParamSpec]) -> dict[str, BaseDistribution]:
    """Every param's distribution, by name."""
    return {spec.name: distribution(spec) for spec in space}


def _stream_seed(sampler_seed: int, slot: int, name: str) -> int:
    entropy = [sampler_seed & 0xFFFFFFFF, slot, zlib.crc32(name.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def slot_params(space: Iterable[ParamSpec], sampler_seed: int, slot: int) -> dict[str, Any]:
    """Params of slot ``slot``: a pure function of the space, the sampler seed and the slot."""
    if slot < 0:
        raise ValueError(f"slot must be ≥ 0, got {slot}")
    params: dict[str, Any] = {}
    for spec in space:
        sampler = optuna.samplers.RandomSampler(seed=_stream_seed(sampler_seed, slot, spec.name))
        # RandomSampler.sample_independent reads neither the study nor the trial.
        value = sampler.sample_independent(None, None, spec.name, distribution(spec))  # type: ignore[arg-type]
        params[spec.name] = value.item() if hasattr(value, "item") else value
    return params


def params_from_trial(trial: optuna.trial.BaseTrial, space: Iterable[ParamSpec]) -> dict[str, Any]:
    """Turn a trial into params. The search (a live trial with enqueued values) and finalize (a
    ``FixedTrial`` of the best trial's params) both call this one function."""
    params: dict[str, Any] = {}
    for spec in space:
        dist = distribution(spec)
        if isinstance(dist, CategoricalDistribution):
            params[spec.name] = trial.suggest_categorical(spec.name, dist.choices)
        elif isinstance(dist, IntDistribution):
            params[spec.name] = trial.suggest_int(
                spec.name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        else:
            assert isinstance(dist, FloatDistribution)
            params[spec.name] = trial.suggest_float(
                spec.name, dist.low, dist.high, step=dist.step, log=dist.log
            )
    return params
