"""Study configs (YAML): validated before anything is compiled.

A config is the study's `hj.StudySettings` (the same keys as `hj.sbc`'s options: chains,
warmup, draws, sampler, batch_size, ...) plus what the study is: the model and its design
sizes, how many datasets, the held values of a recovery, where results go. The sampler and
the initialisation are named (`sampler: blackjax`, `init: prior`), with their options flat
(`lanes: 4`, `vectorize: 4`, `init_radius: 1.0`) or together (`sampler: {name: nuts, lanes:
4}`).

Example (configs/varying_intercept.yaml):
    model: varying_intercept
    args: {groups: 20, per_group: 10}
    datasets: 200
    output: hjax-results/varying-intercept
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import pydantic
import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from hjax.catalog import SHIPPED
from hjax.errors import ConfigError, DataError, UserInputError
from hjax.formula import formula
from hjax.inference.nuts.keys import check_seed
from hjax.model.model import Model
from hjax.settings import Count, FitSettings, Number, Settings, StudySettings
from hjax.studies.recover import held_numbers
from hjax.studies.store import CLAIM_EXPIRY


class ClusterSettings(Settings):
    """How `hjax submit` asks Slurm for the study's array tasks (YAML section `cluster:`).

    Example (YAML):
        cluster: {partition: gpu, gpus_per_task: 1, cpus_per_task: 8, mem: 32G, time: 60,
                  tasks: 16, parallel: 8, sbatch: {qos: normal}}
    """

    tasks: Count = Field(4, ge=1, description="array size: the study's batches are dealt out "
                                              "round-robin to this many shards, and a task "
                                              "done with its own takes the others' unclaimed")
    claim_expiry: Number = Field(CLAIM_EXPIRY, gt=0, description=(
        "seconds a task's claim of a batch lasts unrenewed: how long a dead task's batch in "
        "hand waits before another task takes it"))
    parallel: Count | None = Field(None, ge=1, description="array tasks running at once")
    partition: str | None = None
    account: str | None = None
    time: Count = Field(60, ge=1, description="time limit per task, minutes")
    cpus_per_task: Count = Field(1, ge=1)
    gpus_per_task: Count | None = Field(None, ge=1)
    mem: str | None = Field(None, description="memory per task, e.g. 16G")
    signal_delay: Count = Field(90, ge=5, description="seconds before the time limit at "
                                                      "which a task is told to checkpoint")
    requeues: Count = Field(3, ge=0, description="how often a task may be requeued")
    setup: list[str] = Field(default_factory=list, description="shell lines run first")
    sbatch: dict[str, str | int | bool] = Field(default_factory=dict,
                                                description="extra sbatch flags by name")


class StudyConfig(StudySettings):
    """Everything a study run needs; unknown keys and wrong types are errors."""

    study: Literal["sbc", "recover"] | None = Field(
        None, description="the kind of study; by default recover when `given` or `grid` is set")
    model: str | None = Field(None, description="a shipped model name or "
                                                "'package.module:function'")
    formula: str | None = Field(None, description="instead of `model`: 'y ~ 1 + x + (1 | g)'")
    family: str = Field("gaussian", description="formula: the likelihood family")
    parameters: dict[str, str | float] = Field(
        default_factory=dict, description="formula: other parameters' formulas (sigma, a, t0), "
                                          "and trials or choice columns")
    priors: dict[str, str] = Field(default_factory=dict,
                                   description="formula: priors by name, e.g. 'Normal(0, 1)'")
    design: str | None = Field(None, description="formula: a CSV or JSON file of columns")
    args: dict[str, Any] = Field(default_factory=dict, description="design sizes for the builder")
    datasets: Count = Field(100, gt=0, description="sbc: simulated datasets")
    alpha: Number = Field(0.01, gt=0, lt=1, description="uniformity-test level after correction")
    seed: Annotated[Count, AfterValidator(check_seed)] = Field(
        0, description="the study's key is jax.random.key(seed), 0 <= seed < 2**32")
    output: str = "hjax-results/study"
    x64: bool = False
    given: dict[str, Any] = Field(default_factory=dict, description="recover: held values (a "
                                                                   "number or a list)")
    grid: dict[str, Any] = Field(default_factory=dict, description="recover: lists of values "
                                                                   "to cross")
    replicates: Count = Field(1, gt=0, description="recover: datasets per grid point")
    shrinkage: str | None = Field(None, description="recover: Level whose shrinkage to show")
    data: str | None = Field(None, description="fit: a JSON file of columns")
    compile_cache: str | bool = Field(
        True, description="JAX's persistent compilation cache: true is <output>/compile-cache, "
                          "a path shares one across studies, false turns it off")
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @field_validator("given", "grid")
    @classmethod
    def _numbers(cls, values: dict, info) -> dict:
        # Checked as numbers here, against the model's parameters once it is built
        # (`hj.recover`); kept as written, so the config saved beside the study stays YAML-like.
        for name, value in values.items():
            if info.field_name == "grid" and not (isinstance(value, list) and value):
                raise ConfigError(f"{name} must be a non-empty list of numbers to cross, e.g. "
                                  f"[0.5, 1.0]; got {value!r:.60}")
            held_numbers(value, name)
        return values

    @model_validator(mode="after")
    def _builder_exists(self):
        if (self.model is None) == (self.formula is None):
            raise ConfigError("give either `model` (a builder) or `formula` (with `design`)")
        if self.model is not None:
            builder(self.model)
        elif self.design is None:
            raise ConfigError("`formula` needs `design`: a CSV or JSON file of the columns")
        for name, text in self.priors.items():
            parse_prior(text, name)
        return self

    @property
    def title(self) -> str:
        """The model as reports name it."""
        return self.model or self.formula

    def settings(self) -> StudySettings:
        """The study settings of this config (its `StudySettings` fields)."""
        return StudySettings(**self.model_dump(include=set(StudySettings.model_fields)))

    def fit_settings(self) -> FitSettings:
        """The settings of a single fit (`hjax fit`): one dataset, no batches."""
        fields = set(FitSettings.model_fields) - {"batch_size"}
        return FitSettings(**self.model_dump(include=fields))

    @property
    def kind(self) -> str:
        """"sbc" or "recover": `study`, or recover when values are held."""
        return self.study or ("recover" if self.given or self.grid else "sbc")

    def n_datasets(self, kind: str | None = None) -> int:
        """Datasets of the study (of `kind`, "sbc" or "recover", if given)."""
        if (kind or self.kind) == "sbc":
            return self.datasets
        return math.prod(len(v) for v in self.grid.values()) * self.replicates

    def cache_directory(self) -> Path | None:
        """Where the persistent compilation cache lives, or None when it is off."""
        if self.compile_cache is False:
            return None
        if self.compile_cache is True:
            return Path(self.output) / "compile-cache"
        return Path(self.compile_cache).expanduser()


def builder(name: str):
    """The builder a config names: shipped, or imported from 'module:function'."""
    if name in SHIPPED:
        return SHIPPED[name]
    if ":" not in name:
        raise ConfigError(f"Unknown model '{name}'; shipped models are {sorted(SHIPPED)}, or "
                          "give 'package.module:function' returning (model, design).")
    module, _, function = name.partition(":")
    try:
        make = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"Cannot import model builder '{name}': {error}.") from None
    if not callable(make):
        raise ConfigError(f"Model builder '{name}' is a {type(make).__name__}, not a function "
                          "returning (model, design).")
    return make


def parse_prior(text: str, name: str = "prior"):
    """A prior from its printed form, e.g. "Normal(0, 1)" or "LKJCholesky(dim=2, eta=2)".

    Example:
        >>> parse_prior("HalfNormal(2.5)")
        HalfNormal(scale=2.5)
    """
    from hjax.model import priors

    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", str(text))
    cls = getattr(priors, match.group(1), None) if match else None
    if not (isinstance(cls, type) and issubclass(cls, priors.Prior)):
        raise ConfigError(f"priors.{name}: {text!r} is not a prior; write e.g. 'Normal(0, 1)' "
                          "or 'HalfNormal(1)'.")
    args, kwargs = [], {}
    try:
        for part in filter(None, (p.strip() for p in match.group(2).split(","))):
            key, _, value = part.rpartition("=")
            (kwargs.__setitem__(key.strip(), float(value)) if key else args.append(float(value)))
        if "dim" in kwargs:
            kwargs["dim"] = int(kwargs["dim"])
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"priors.{name}: {text!r}: {error}") from None


def read_columns(path: str | Path) -> dict:
    """Columns from a CSV or JSON file (a mapping of column name to values)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} not found.")
    if path.suffix.lower() == ".csv":
        return {k: v.to_numpy() for k, v in pd.read_csv(path).items()}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON at line {error.lineno}: {error.msg}.") from None


def build(config: StudyConfig):
    """(model, design) from the config's builder and args, or from its formula and design
    file: args are checked against the builder's signature and type annotations, and a
    builder that fails says so in one line."""
    if config.formula is not None:
        columns = read_columns(config.design)
        priors = {name: parse_prior(text, name) for name, text in config.priors.items()}
        return formula(config.formula, columns, family=config.family, priors=priors,
                       **config.parameters)
    make = builder(config.model)
    accepted = inspect.signature(make).parameters
    unknown = sorted(set(config.args) - set(accepted))
    if unknown:
        raise ConfigError(f"Model '{config.model}' takes no {unknown}; it takes "
                          f"{sorted(accepted)}.")
    try:
        built = pydantic.validate_call(make)(**config.args)
    except ValidationError as error:
        problems = "; ".join(f"args.{'.'.join(map(str, p['loc']))}: {p['msg']} (got "
                             f"{p['input']!r})" for p in error.errors())
        raise ConfigError(f"Model '{config.model}': {problems}.") from None
    except UserInputError as error:  # keeps its kind: a ModelError stays one
        raise type(error)(f"Model '{config.model}' could not be built from args "
                          f"{config.args}: {error}") from None
    except Exception as error:
        # A user's builder failing is the user's to fix: say where, in one line. A shipped
        # one failing other than on its arguments is a bug in hjax, and keeps its traceback.
        if config.model in SHIPPED and not isinstance(error, TypeError | ValueError):
            raise
        frame = traceback.extract_tb(error.__traceback__)[-1]
        raise ConfigError(f"Model builder '{config.model}' raised {type(error).__name__}: "
                          f"{error} ({frame.filename}, line {frame.lineno}), with args "
                          f"{config.args}.") from None
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], Model)
            and isinstance(built[1], Mapping)):
        raise ConfigError(f"Model builder '{config.model}' returned {_shown(built)}; it must "
                          "return (model, design): an hj.Model and a dict of design columns.")
    return built


def _shown(value) -> str:
    """What a builder returned, in a few words."""
    if isinstance(value, tuple):
        return f"a tuple of ({', '.join(type(v).__name__ for v in value)})"
    return "None" if value is None else f"a {type(value).__name__}"


def _yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{path}: not valid YAML{where}: {problem}. Fix the file's syntax (key: value lines)."


def load(path: str | Path, **overrides) -> StudyConfig:
    """Read and validate a YAML config; `overrides` (e.g. from the command line) win.

    Example:
        >>> load("configs/varying_intercept.yaml", datasets=10).datasets
        10
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No config file at {path}.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(_yaml_problem(path, error)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings; got {type(raw).__name__}.")
    raw |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as error:
        lines = [f"{path}: invalid config:"]
        for problem in error.errors():
            where = ".".join(str(p) for p in problem["loc"]) or "config"
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"  {where}: {message}")
        raise ConfigError("\n".join(lines)) from None
