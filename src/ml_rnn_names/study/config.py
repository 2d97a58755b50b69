"""Campaign files: TOML → frozen, validated, hashed configuration.

A campaign is one TOML file in ``studies/``. Every error names the file, the key and the fix; the
resolved config (defaults filled in, ``--set`` overrides applied, paths made absolute against the
TOML's folder) can be printed and is stored on every study it creates.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ml_rnn_names.errors import ConfigError
from ml_rnn_names.model import MODEL_REGISTRY

#: Params every model's training needs; models add their architecture params (``num_layers``, …).
TRAINING_PARAMS = ("learning_rate", "n_batch_size", "n_epoch")
PRUNERS = ("none", "median", "hyperband")

_SCHEMA: dict[str, Any] = {
    "campaign": {
        "name": str,
        "n_trials": int,
        "sampler_seed": int,
        "base_seed": int,
        "storage": str,
        "description": str,
    },
    "data": {"dir": str, "split_seed": int, "validation_split": float, "dedupe": bool},
    "search": dict,
    "models": dict,
    "finalize": {"seeds": list, "confidence": float},
    "pruner": {"kind": str, "n_startup_trials": int, "n_warmup_steps": int},
    "execution": {
        "device": str,
        "threads_per_worker": int,
        "heartbeat_interval": int,
        "grace_period": int,
    },
}


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: a categorical (``choices``), a float/int range, or a fixed value."""

    name: str
    kind: str  # "categorical" | "float" | "int" | "fixed"
    choices: tuple[Any, ...] = ()
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    value: Any = None

    def describe(self) -> dict[str, Any]:
        """A plain dict, stable across processes (what studies store and compare)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["choices"] = list(self.choices)
        elif self.kind == "fixed":
            out["value"] = self.value
        else:
            out.update(low=self.low, high=self.high, log=self.log)
            if self.step is not None:
                out["step"] = self.step
        return out


@dataclass(frozen=True)
class ModelConfig:
    name: str
    params: tuple[ParamSpec, ...]  # shared params first, then the model's own; sorted by name


@dataclass(frozen=True)
class CampaignConfig:
    """A validated campaign. ``source`` is the TOML file; relative paths resolved against its folder."""

    name: str
    source: Path
    n_trials: int
    sampler_seed: int
    base_seed: int
    storage: str
    data_dir: str | None
    split_seed: int
    validation_split: float
    dedupe: bool
    models: tuple[ModelConfig, ...]
    finalize_seeds: tuple[int, ...]
    confidence: float
    pruner: str
    pruner_startup_trials: int
    pruner_warmup_steps: int
    device: str
    threads_per_worker: int  # 0 = share the machine's CPUs between workers
    heartbeat_interval: int
    grace_period: int
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def study_dir(self) -> Path:
        """Where this campaign's results land: ``studies/<campaign>/`` beside the TOML file."""
        return self.source.parent / self.name

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise ConfigError(f"campaign {self.name} has no model {name!r}; it has {self.model_names}")

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def study_name(self, model: str) -> str:
        return f"{self.name}/{model}"

    def identity(self, model: str) -> dict[str, Any]:
        """What makes a study *the same experiment*: reopening it with anything else is refused."""
        return {
            "search_space": [p.describe() for p in self.model(model).params],
            "n_trials": self.n_trials,
            "sampler_seed": self.sampler_seed,
            "base_seed": self.base_seed,
            "split_seed": self.split_seed,
            "validation_split": self.validation_split,
            "dedupe": self.dedupe,
            "pruner": self.pruner,
        }

    def resolved(self) -> dict[str, Any]:
        """The resolved config as plain data (printed by ``config``, stored on every study)."""
        search_shared: dict[str, Any] = {}
        models: dict[str, Any] = {}
        for model in self.models:
            own = {}
            for p in model.params:
                own[p.name] = p.describe()
            models[model.name] = own
        shared_names = set.intersection(*(set(v) for v in models.values())) if models else set()
        for name in sorted(shared_names):
            values = [json.dumps(models[m][name], sort_keys=True) for m in models]
            if len(set(values)) == 1:
                search_shared[name] = models[next(iter(models))][name]
        return {
            "campaign": {
                "name": self.name,
                "source": str(self.source),
                "n_trials": self.n_trials,
                "sampler_seed": self.sampler_seed,
                "base_seed": self.base_seed,
                "storage": self.storage,
                "description": self.description,
            },
            "data": {
                "dir": self.data_dir,
                "split_seed": self.split_seed,
                "validation_split": self.validation_split,
                "dedupe": self.dedupe,
            },
            "search_shared": search_shared,
            "models": {
                name: {k: v for k, v in params.items() if k not in search_shared}
                for name, params in models.items()
            },
            "finalize": {"seeds": list(self.finalize_seeds), "confidence": self.confidence},
            "pruner": {
                "kind": self.pruner,
                "n_startup_trials": self.pruner_startup_trials,
                "n_warmup_steps": self.pruner_warmup_steps,
            },
            "execution": {
                "device": self.device,
                "threads_per_worker": self.threads_per_worker,
                "heartbeat_interval": self.heartbeat_interval,
                "grace_period": self.grace_period,
            },
        }

    def config_hash(self) -> str:
        """SHA-256 of every model's identity (see :meth:`identity`), short enough to print."""
        payload = json.dumps({m: self.identity(m) for m in self.model_names}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------- parsing


class _Where:
    """Formats ``file: key: problem; fix`` messages."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def error(self, key: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}" + (f"; {fix}" if fix else ""))


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }
    return names.get(kind, str(kind)) if isinstance(kind, type) else " or ".join(map(_type_name, kind))


def _check_type(where: _Where, key: str, value: Any, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise where.error(key, f"expected {_type_name(kind)}, got {type(value).__name__} {value!r}")
    return value


def _check_keys(where: _Where, prefix: str, table: dict[str, Any], allowed: list[str] | dict) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(allowed))}"
            raise where.error(f"{prefix}{key}", "unknown key", hint)


def _parse_param(where: _Where, key: str, name: str, spec: Any) -> ParamSpec:
    """``{choices = [...]}`` | ``{low, high, log?, step?, type?}`` | a plain value (fixed)."""
    if not isinstance(spec, dict):
        if isinstance(spec, list):
            raise where.error(key, "a bare list is ambiguous", f"write {name} = {{ choices = {spec} }}")
        return ParamSpec(name, "fixed", value=spec)
    _check_keys(where, key + ".", spec, ["choices", "low", "high", "log", "step", "type"])
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        if extra:
            raise where.error(key, f"'choices' cannot be combined with {sorted(extra)}", "use one form")
        choices = spec["choices"]
        if not isinstance(choices, list):
            raise where.error(f"{key}.choices", f"expected a list, got {choices!r}")
        if not choices:
            raise where.error(f"{key}.choices", "empty choice list", "list at least one value")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise where.error(f"{key}.choices", f"duplicate values in {choices}", "list each value once")
        if any(isinstance(c, dict | list) for c in choices):
            raise where.error(f"{key}.choices", "choices must be numbers, strings or booleans")
        return ParamSpec(name, "categorical", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise where.error(key, "a range needs both 'low' and 'high' (or use 'choices')")
    low, high = spec["low"], spec["high"]
    for bound_key, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise where.error(f"{key}.{bound_key}", f"expected a number, got {bound!r}")
        if not math.isfinite(bound):
            raise where.error(f"{key}.{bound_key}", f"must be finite, got {bound}")
    kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise where.error(f"{key}.type", f"expected 'int' or 'float', got {kind!r}")
    if not low < high:
        raise where.error(key, f"low ({low}) must be below high ({high})", "swap them, or use a fixed value")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise where.error(f"{key}.log", f"expected true/false, got {log!r}")
    if log and low <= 0:
        raise where.error(f"{key}.low", f"a log range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
        raise where.error(f"{key}.step", f"expected a positive number, got {step!r}")
    if kind == "int":
        return ParamSpec(name, "int", low=int(low), high=int(high), log=log, step=int(step or 1))
    return ParamSpec(name, "float", low=float(low), high=float(high), log=log, step=step)


def _parse_space(where: _Where, prefix: str, table: Any) -> dict[str, ParamSpec]:
    if not isinstance(table, dict):
        raise where.error(prefix, f"expected a table, got {table!r}")
    return {name: _parse_param(where, f"{prefix}.{name}", name, spec) for name, spec in table.items()}


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: Path) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as TOML, else taken as strings)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. campaign.n_trials=3")
        key, text = (part.strip() for part in item.split("=", 1))
        if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", key):
            raise ConfigError(f"--set {item!r}: {key!r} is not a dotted key such as campaign.n_trials")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a table, in {source}")
            node = child
        node[parts[-1]] = value
    return raw


def load_campaign(path: str | Path, overrides: list[str] | None = None) -> CampaignConfig:
    """Read, override, validate and resolve a campaign TOML file."""
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise ConfigError(f"{source}: campaign file not found")
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    raw = apply_overrides(raw, overrides or [], source)
    return parse_campaign(raw, source)


def parse_campaign(raw: dict[str, Any], source: Path) -> CampaignConfig:
    """Validate a campaign's raw TOML data; see ``studies/rnn_vs_lstm.toml`` for the annotated format."""
    where = _Where(source)
    _check_keys(where, "", raw, _SCHEMA)
    tables: dict[str, dict[str, Any]] = {}
    for section, spec in _SCHEMA.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise where.error(section, f"expected a table [{section}], got {table!r}")
        if isinstance(spec, dict):
            _check_keys(where, f"{section}.", table, spec)
            table = {k: _check_type(where, f"{section}.{k}", v, spec[k]) for k, v in table.items()}
        tables[section] = table

    camp = tables["campaign"]
    name = camp.get("name", source.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise where.error("campaign.name", f"{name!r} is not a safe name", "use letters, digits, _ . -")
    n_trials = camp.get("n_trials", 10)
    if n_trials < 1:
        raise where.error("campaign.n_trials", f"must be at least 1, got {n_trials}")
    storage = camp.get("storage", f"sqlite:///{name}.db")
    storage = _resolve_sqlite_path(storage, source.parent)

    data = tables["data"]
    data_dir = data.get("dir")
    if data_dir is not None:
        data_dir = str((source.parent / Path(data_dir).expanduser()).resolve())
    validation_split = data.get("validation_split", 0.15)
    if not 0 < validation_split < 0.5:
        raise where.error("data.validation_split", f"must be between 0 and 0.5, got {validation_split}")

    shared = _parse_space(where, "search", tables["search"])
    models_raw = tables["models"]
    if not models_raw:
        raise where.error("models", "no models", "add e.g. [models.RNN] and [models.LSTM]")
    models = []
    for model_name, model_table in models_raw.items():
        key = f"models.{model_name}"
        if model_name not in MODEL_REGISTRY:
            close = difflib.get_close_matches(model_name, list(MODEL_REGISTRY), n=1)
            raise where.error(
                key,
                f"unknown model {model_name!r}",
                f"did you mean {close[0]!r}?" if close else f"registered models: {sorted(MODEL_REGISTRY)}",
            )
        if not isinstance(model_table, dict):
            raise where.error(key, f"expected a table, got {model_table!r}")
        _check_keys(where, key + ".", model_table, ["search"])
        own = _parse_space(where, f"{key}.search", model_table.get("search", {}))
        clash = sorted(set(own) & set(shared))
        if clash:
            raise where.error(
                f"{key}.search.{clash[0]}", "already in [search]", "declare a param in one place"
            )
        params = {**shared, **own}
        needed = (*TRAINING_PARAMS, *MODEL_REGISTRY[model_name].arch_params)
        missing = [p for p in needed if p not in params]
        if missing:
            raise where.error(
                key, f"needs params {missing}", f"add them to [search] or [models.{model_name}.search]"
            )
        unused = sorted(set(params) - set(needed))
        if unused:
            raise where.error(
                f"{key}.search" if set(unused) & set(own) else f"search.{unused[0]}",
                f"{unused} are not params of {model_name}",
                f"it takes {sorted(needed)}",
            )
        _check_param_values(where, model_name, params, own=set(own))
        models.append(ModelConfig(model_name, tuple(params[k] for k in sorted(params))))

    fin = tables["finalize"]
    seeds = fin.get("seeds", [42, 123, 456])
    if not seeds:
        raise where.error("finalize.seeds", "empty", "list at least one seed, e.g. [42, 123, 456]")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise where.error("finalize.seeds", f"seeds must be integers, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise where.error("finalize.seeds", f"duplicate seeds in {seeds}", "each seed once")
    confidence = fin.get("confidence", 0.95)
    if not 0 < confidence < 1:
        raise where.error("finalize.confidence", f"must be between 0 and 1, got {confidence}")

    pruner = tables["pruner"]
    kind = pruner.get("kind", "none")
    if kind not in PRUNERS:
        raise where.error("pruner.kind", f"unknown pruner {kind!r}", f"use one of {list(PRUNERS)}")

    execution = tables["execution"]
    threads = execution.get("threads_per_worker", 0)
    heartbeat = execution.get("heartbeat_interval", 10)
    grace = execution.get("grace_period", 3 * heartbeat)
    if threads < 0:
        raise where.error("execution.threads_per_worker", f"must be ≥ 0 (0 = automatic), got {threads}")
    if heartbeat < 1 or grace <= heartbeat:
        raise where.error(
            "execution.grace_period",
            f"need heartbeat_interval ≥ 1 and grace_period > it, got {heartbeat}, {grace}",
        )

    return CampaignConfig(
        name=name,
        source=source,
        n_trials=n_trials,
        sampler_seed=camp.get("sampler_seed", 0),
        base_seed=camp.get("base_seed", 0),
        storage=storage,
        data_dir=data_dir,
        split_seed=data.get("split_seed", 2024),
        validation_split=validation_split,
        dedupe=data.get("dedupe", False),
        models=tuple(models),
        finalize_seeds=tuple(seeds),
        confidence=confidence,
        pruner=kind,
        pruner_startup_trials=pruner.get("n_startup_trials", 5),
        pruner_warmup_steps=pruner.get("n_warmup_steps", 3),
        device=execution.get("device", "cpu"),
        threads_per_worker=threads,
        heartbeat_interval=heartbeat,
        grace_period=grace,
        description=camp.get("description", ""),
        raw=raw,
    )


def _check_param_values(where: _Where, model: str, params: dict[str, ParamSpec], *, own: set[str]) -> None:
    """Integer params must only ever take positive integers; the learning rate must be positive.

    ``own`` are the params declared in ``[models.<model>.search]``: errors name the key where they are.
    """

    def key(name: str) -> str:
        return f"models.{model}.search.{name}" if name in own else f"search.{name}"

    for name in ("n_batch_size", "n_epoch", "hidden_size", "num_layers"):
        spec = params.get(name)
        if spec is None:
            continue
        values = spec.choices if spec.kind == "categorical" else (spec.value,) if spec.kind == "fixed" else ()
        if spec.kind == "float":
            raise where.error(key(name), "must be an integer range or choices", "e.g. { choices = [1, 2] }")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if spec.kind == "int" and spec.low is not None and spec.low < 1:
            bad.append(spec.low)
        if bad:
            raise where.error(key(name), f"values must be positive integers, got {bad}")
    lr = params.get("learning_rate")
    if lr is not None:
        values = lr.choices if lr.kind == "categorical" else (lr.value,) if lr.kind == "fixed" else (lr.low,)
        bad = [
            v for v in values if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf
        ]
        if bad:
            raise where.error(key("learning_rate"), f"must be positive finite numbers, got {bad}")


def _resolve_sqlite_path(url: str, base: Path) -> str:
    """Make a relative ``sqlite:///file.db`` absolute against the campaign's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        path = url[len(prefix) :]
        if path and not Path(path).is_absolute():
            return prefix + str((base / path).resolve())
    return url
