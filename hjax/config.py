"""Study configs (YAML): validated before anything is compiled.

A config is the study's `hj.StudySettings` (the same keys as `hj.sbc`'s options: chains,
warmup, draws, sampler, batch_size, ...) plus what the study is: the model and its design
sizes, how many datasets, the held values of a recovery, where results go.

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
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hjax.catalog import SHIPPED
from hjax.model.formula import formula
from hjax.settings import FitSettings, StudySettings


class ClusterSettings(BaseModel):
    """How `hjax submit` asks Slurm for the study's array tasks (YAML section `cluster:`).

    Example (YAML):
        cluster: {partition: gpu, gpus_per_task: 1, cpus_per_task: 8, mem: 32G, time: 60,
                  tasks: 16, parallel: 8, sbatch: {qos: normal}}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: int = Field(4, ge=1, description="array size: the study's batches are dealt out "
                                            "round-robin to this many shards")
    parallel: int | None = Field(None, ge=1, description="array tasks running at once")
    partition: str | None = None
    account: str | None = None
    time: int = Field(60, ge=1, description="time limit per task, minutes")
    cpus_per_task: int = Field(1, ge=1)
    gpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = Field(None, description="memory per task, e.g. 16G")
    signal_delay: int = Field(90, ge=5, description="seconds before the time limit at which "
                                                    "a task is told to checkpoint")
    requeues: int = Field(3, ge=0, description="how often a task may be requeued")
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
    datasets: int = Field(100, gt=0, description="sbc: simulated datasets")
    alpha: float = Field(0.01, gt=0, lt=1, description="uniformity-test level after correction")
    seed: int = Field(0, description="the study's key is jax.random.key(seed)")
    output: str = "hjax-results/study"
    x64: bool = False
    given: dict[str, float | list] = Field(default_factory=dict, description="recover: fixed")
    grid: dict[str, list[float]] = Field(default_factory=dict, description="recover: grid")
    replicates: int = Field(1, gt=0, description="recover: datasets per grid point")
    shrinkage: str | None = Field(None, description="recover: Level whose shrinkage to show")
    data: str | None = Field(None, description="fit: a JSON file of columns")
    compile_cache: str | bool = Field(
        True, description="JAX's persistent compilation cache: true is <output>/compile-cache, "
                          "a path shares one across studies, false turns it off")
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @model_validator(mode="after")
    def _builder_exists(self):
        if (self.model is None) == (self.formula is None):
            raise ValueError("give either `model` (a builder) or `formula` (with `design`)")
        if self.model is not None:
            builder(self.model)
        elif self.design is None:
            raise ValueError("`formula` needs `design`: a CSV or JSON file of the columns")
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
        raise ValueError(f"Unknown model '{name}'; shipped models are {sorted(SHIPPED)}, or give "
                         "'package.module:function' returning (model, design).")
    module, _, function = name.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Cannot import model builder '{name}': {error}.") from None


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
        raise ValueError(f"priors.{name}: {text!r} is not a prior; write e.g. 'Normal(0, 1)' "
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
        raise ValueError(f"priors.{name}: {text!r}: {error}") from None


def read_columns(path: str | Path) -> dict:
    """Columns from a CSV or JSON file (a mapping of column name to values)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Data file {path} not found.")
    if path.suffix.lower() == ".csv":
        return {k: v.to_numpy() for k, v in pd.read_csv(path).items()}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON at line {error.lineno}: {error.msg}.") from None


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
        raise ValueError(f"Model '{config.model}' takes no {unknown}; it takes "
                         f"{sorted(accepted)}.")
    try:
        return pydantic.validate_call(make)(**config.args)
    except ValidationError as error:
        problems = "; ".join(f"args.{'.'.join(map(str, p['loc']))}: {p['msg']} (got "
                             f"{p['input']!r})" for p in error.errors())
        raise ValueError(f"Model '{config.model}': {problems}.") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"Model '{config.model}' could not be built from args {config.args}: "
                         f"{error}") from None


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
        raise ValueError(f"No config file at {path}.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(_yaml_problem(path, error)) from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings; got {type(raw).__name__}.")
    raw |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return StudyConfig(**raw)
    except ValidationError as error:
        lines = [f"{path}: invalid config:"]
        for problem in error.errors():
            where = ".".join(str(p) for p in problem["loc"]) or "config"
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"  {where}: {message}")
        raise ValueError("\n".join(lines)) from None
