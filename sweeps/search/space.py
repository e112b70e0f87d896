"""Search spaces declared in ``conf/sweep/*.yaml``: parsing, validation, sampling.

A space maps a config path to a distribution::

    optimizer.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    train.mini_batch_size: {type: categorical, choices: [16, 32, 64, 128, 256]}
    train.decay_rate: {type: float, low: 1.0e-3, high: 1.0, log: true,
                       when: {train.decay: [continuous, discrete]}}
    optimizer: {type: categorical, choices: [momentum, adam]}   # a config group

A path is either a key of the composed config (``train.lambd``) or the name
of a config group (``optimizer``), which then picks a file of that group.
``when`` makes a parameter conditional on the sampled value of another one.

Everything is checked before the first trial: bounds, types, unknown paths,
and parameters that would have no effect under the rest of the config.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
from omegaconf import DictConfig, OmegaConf

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.space_file import flatten_space

log = logging.getLogger(__name__)

TYPES = ("float", "int", "categorical")
_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}


def _has(reg: Any, part: str) -> bool:
    return isinstance(reg, str) and part in reg.lower()


# A sampled key only matters when another setting allows it:
# key -> (setting it depends on, predicate on that setting's value, what it needs).
EFFECT_RULES: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "train.keep_prob": ("train.regularization", lambda v: _has(v, "dropout"), "dropout in train.regularization"),
    "train.lambd": ("train.regularization", lambda v: _has(v, "l2"), "l2 in train.regularization"),
    "train.decay_rate": ("train.decay", lambda v: v is not None, "train.decay set (continuous or discrete)"),
    "train.decay_interval": ("train.decay", lambda v: v == "discrete", "train.decay=discrete"),
    "optimizer.beta1": ("optimizer.name", lambda v: v in ("momentum", "adam"), "optimizer momentum or adam"),
    "optimizer.beta2": ("optimizer.name", lambda v: v in ("rmsprop", "adam"), "optimizer rmsprop or adam"),
    "optimizer.epsilon": ("optimizer.name", lambda v: v in ("rmsprop", "adam"), "optimizer rmsprop or adam"),
}


@dataclass(frozen=True)
class Param:
    """One dimension of the search space."""

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: Mapping[str, tuple] = field(default_factory=dict)
    is_group: bool = False

    @property
    def labels(self) -> tuple:
        """Choices as Optuna can store them (lists become their JSON text)."""
        return tuple(json.dumps(c) if isinstance(c, (list, dict)) else c for c in self.choices)

    def active(self, sampled: Mapping[str, Any]) -> bool:
        return all(sampled.get(dep) in allowed for dep, allowed in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.path, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.path, self.low, self.high, log=self.log, step=self.step or 1)
        label = trial.suggest_categorical(self.path, self.labels)
        return self.choices[self.labels.index(label)]

    def fixed(self, value: Any, where: str) -> Any:
        """``value`` as this parameter's Optuna value, or a UserError if the distribution excludes it."""
        if self.kind == "categorical":
            if value not in self.choices:
                raise UserError(f"{where}: {self.path}={value!r} is not one of the choices {list(self.choices)}")
            return self.labels[self.choices.index(value)]
        number = int if self.kind == "int" else (int, float)
        if not isinstance(value, number) or isinstance(value, bool):
            what = "an integer" if self.kind == "int" else "a number"
            raise UserError(f"{where}: {self.path}={value!r} is invalid: must be {what} in [{self.low}, {self.high}]")
        if not self.low <= value <= self.high:
            raise UserError(f"{where}: {self.path}={value!r} is outside the searched range [{self.low}, {self.high}]")
        return value

    def grid_values(self) -> list:
        if self.kind == "categorical":
            return list(self.labels)
        if self.step is None:
            raise UserError(
                f"sweep.space.{self.path}: the grid sampler needs 'choices' or a 'step' for {self.kind} parameters"
            )
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self.low + i * self.step for i in range(count)]


def _when_text(when: Mapping[str, tuple]) -> str:
    return " and ".join(f"{dep} is one of {list(allowed)}" for dep, allowed in when.items())


def format_override(path: str, value: Any) -> str:
    """A Hydra command-line override setting ``path`` to ``value``."""
    return f"{path}={_format_value(value)}"


def _format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    text = str(value)
    if text.replace("_", "").replace("-", "").replace("+", "").replace(".", "").isalnum():
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SearchSpace:
    """An ordered, validated set of :class:`Param`."""

    def __init__(self, params: list[Param]):
        self.params = params

    # ----------------------------------------------------------- parsing
    @classmethod
    def from_config(cls, space: Mapping[str, Any] | None, base_cfg: DictConfig, conf_dir: Path) -> "SearchSpace":
        """Parse ``sweep.space`` and check it against the composed base config."""
        specs = flatten_space(space)
        if not specs:
            raise UserError(
                "sweep.space is empty: name at least one parameter to search, e.g. "
                "optimizer.learning_rate: {type: float, low: 1e-4, high: 1e-1, log: true}"
            )
        params = [_parse(path, spec, base_cfg, conf_dir) for path, spec in specs.items()]
        out = cls(params)
        out._check_conditions()
        out._check_effects(base_cfg)
        return out

    def _check_conditions(self) -> None:
        by_path = {p.path: p for p in self.params}
        for p in self.params:
            for dep, allowed in p.when.items():
                if dep not in by_path or by_path[dep].kind != "categorical":
                    raise UserError(
                        f"sweep.space.{p.path}.when names {dep!r}, which is not a categorical parameter of this space"
                    )
                if list(by_path).index(dep) > list(by_path).index(p.path):
                    raise UserError(f"sweep.space.{p.path}.when names {dep!r}: list {dep} before {p.path}")
                unknown = [a for a in allowed if a not in by_path[dep].choices]
                if unknown:
                    raise UserError(
                        f"sweep.space.{p.path}.when.{dep}: {unknown} are not choices of {dep} "
                        f"({list(by_path[dep].choices)})"
                    )

    def _check_effects(self, base_cfg: DictConfig) -> None:
        """Refuse dimensions that some or all trials would sample for nothing."""
        by_path = {p.path: p for p in self.params}
        for p in self.params:
            rule = EFFECT_RULES.get(p.path)
            if rule is None:
                continue
            dep, needs, what = rule
            group = dep.split(".")[0] if dep == "optimizer.name" else None
            sampled_dep = by_path.get(dep) or (by_path.get(group) if group else None)
            if sampled_dep is not None:
                allowed = p.when.get(sampled_dep.path, sampled_dep.choices)
                idle = [v for v in allowed if not needs(v)]
                if idle:
                    raise UserError(
                        f"sweep.space.{p.path} has no effect when {sampled_dep.path} is {idle[0]!r} (it needs "
                        f"{what}); add when: {{{sampled_dep.path}: [...]}} listing only the choices it applies to"
                    )
            else:
                value = OmegaConf.select(base_cfg, dep)
                if not needs(value):
                    raise UserError(
                        f"sweep.space.{p.path} has no effect: {dep} is {value!r} in this config (it needs {what}); "
                        f"set {dep} in sweep.overrides or remove {p.path} from the space"
                    )
        self._check_discrete_interval(base_cfg, by_path)

    def _check_discrete_interval(self, base_cfg: DictConfig, by_path: dict[str, Param]) -> None:
        decay = by_path.get("train.decay")
        if decay is None or "discrete" not in decay.choices or "train.decay_interval" in by_path:
            return
        interval = OmegaConf.select(base_cfg, "train.decay_interval")
        epochs = by_path.get("train.epoch")
        max_epochs = (
            epochs.high
            if epochs is not None and epochs.kind != "categorical"
            else (max(epochs.choices) if epochs is not None else OmegaConf.select(base_cfg, "train.epoch"))
        )
        if interval is not None and max_epochs is not None and interval >= max_epochs:
            # Harmless (a schedule that never steps is a constant rate), so a quick try such as
            # train.epoch=5 must still run: say so once, before the first trial.
            log.warning(
                "sweep.space.train.decay offers 'discrete', but train.decay_interval=%s >= train.epoch=%s: the "
                "discrete schedule never steps (a constant rate) in this sweep; lower train.decay_interval to "
                "search it",
                interval,
                max_epochs,
            )

    # ---------------------------------------------------------- sampling
    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every active parameter; returns path -> value."""
        sampled: dict[str, Any] = {}
        for p in self.params:
            if p.active(sampled):
                sampled[p.path] = p.suggest(trial)
        return sampled

    def overrides(self, sampled: Mapping[str, Any]) -> list[str]:
        """Hydra overrides for sampled values; group choices first."""
        groups = [format_override(p.path, sampled[p.path]) for p in self.params if p.is_group and p.path in sampled]
        keys = [format_override(p.path, sampled[p.path]) for p in self.params if not p.is_group and p.path in sampled]
        return groups + keys

    def fixed_params(self, overrides: list[str], where: str = "sweep.baseline") -> dict[str, Any]:
        """Optuna params (as ``enqueue_trial`` takes them) for a configuration given as overrides.

        Every override must set a searched key to a value its distribution
        allows, and every parameter active under those values must be set:
        the trial is then exactly that configuration, sampled by nobody.
        """
        from omegaconf import OmegaConf

        by_path = {p.path: p for p in self.params}
        values: dict[str, Any] = {}
        for override in overrides:
            key = str(override).split("=", 1)[0]
            if key in values:
                raise UserError(
                    f"{where}: {key} is set twice ({values[key]!r}, then {override!r}); "
                    "a baseline sets each searched key once"
                )
            if key not in by_path:
                raise UserError(
                    f"{where}: {override!r} sets {key}, which this study does not search; a fixed "
                    f"setting for every trial belongs in sweep.overrides (searched: {', '.join(by_path)})"
                )
            try:
                value = OmegaConf.to_container(OmegaConf.from_dotlist([str(override)]), resolve=True)
                for part in key.split("."):
                    value = value[part]
            except Exception as exc:  # noqa: BLE001 - any parse error is the user's override
                raise UserError(f"{where}: cannot read {override!r} ({exc})") from None
            values[key] = value
        params: dict[str, Any] = {}
        for p in self.params:
            if not p.active(values):
                if p.path in values:
                    raise UserError(
                        f"{where}: {p.path} has no effect when "
                        + " and ".join(
                            f"{dep}={values.get(dep)!r}"
                            for dep, allowed in p.when.items()
                            if values.get(dep) not in allowed
                        )
                        + f" (it applies when {_when_text(p.when)}); drop it from the baseline"
                    )
                continue
            if p.path not in values:
                raise UserError(
                    f"{where} does not set {p.path}, which is searched (and active) in this study; "
                    "a baseline must fix every searched key"
                )
            params[p.path] = p.fixed(values[p.path], where)
        return params

    def values_of(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's Optuna params back as config values (labels of list choices become lists)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.path in params:
                value = params[p.path]
                out[p.path] = p.choices[p.labels.index(value)] if p.kind == "categorical" else value
        return out

    def grid(self) -> dict[str, list]:
        return {p.path: p.grid_values() for p in self.params}


def _parse(path: str, spec: Any, base_cfg: DictConfig, conf_dir: Path) -> Param:
    where = f"sweep.space.{path}"
    if not isinstance(spec, Mapping):
        raise UserError(f"{where} must be a mapping like {{type: float, low: ..., high: ...}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise UserError(f"{where}.type={kind!r} is invalid: must be one of {', '.join(TYPES)}")
    extra = set(spec) - _KEYS[kind]
    if extra:
        raise UserError(f"{where}: unknown key(s) {sorted(extra)} for type {kind}; allowed: {sorted(_KEYS[kind])}")
    is_group = (conf_dir / path).is_dir() and "." not in path
    if not is_group and OmegaConf.select(base_cfg, path, default="__missing__") == "__missing__":
        raise UserError(
            f"{where}: {path!r} is not a key of the composed config nor a config group; "
            f"check the spelling (keys look like train.lambd or optimizer.learning_rate)"
        )
    when = {str(k): tuple(v) if isinstance(v, (list, tuple)) else (v,) for k, v in (spec.get("when") or {}).items()}
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise UserError(f"{where}.choices must be a non-empty list, got {choices!r}")
        if is_group:
            missing = [c for c in choices if not (conf_dir / path / f"{c}.yaml").is_file()]
            if missing:
                have = sorted(f.stem for f in (conf_dir / path).glob("*.yaml"))
                raise UserError(f"{where}.choices: {missing} are not files of the config group {path!r} ({have})")
        return Param(path, kind, choices=tuple(choices), when=when, is_group=is_group)
    if is_group:
        raise UserError(f"{where}: {path!r} is a config group; search it with type: categorical and choices")
    low, high, log, step = spec.get("low"), spec.get("high"), bool(spec.get("log", False)), spec.get("step")
    number = int if kind == "int" else (int, float)
    for name, value in (("low", low), ("high", high)):
        if not isinstance(value, number) or isinstance(value, bool):
            raise UserError(
                f"{where}.{name}={value!r} is invalid: must be a{'n integer' if kind == 'int' else ' number'}"
            )
        if not math.isfinite(value):  # .nan / .inf in YAML: Optuna would overflow or sample NaN
            raise UserError(f"{where}.{name}={value!r} is invalid: must be a finite number")
    if low >= high:
        raise UserError(f"{where}: low={low!r} must be smaller than high={high!r}")
    if log and low <= 0:
        raise UserError(f"{where}: log scale needs low > 0, got low={low!r}")
    if log and step is not None:
        raise UserError(f"{where}: 'step' cannot be combined with log: true")
    if step is not None and (not isinstance(step, number) or not math.isfinite(step) or step <= 0):
        raise UserError(f"{where}.step={step!r} is invalid: must be a positive number")
    return Param(path, kind, low=low, high=high, log=log, step=step, when=when)
