"""Study configs (YAML): validated before anything is compiled.

Example (configs/varying_intercept.yaml):
    model: varying_intercept
    args: {groups: 20, per_group: 10}
    datasets: 200
    output: hjax-results/varying-intercept
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hjax.catalog import SHIPPED


class StudyConfig(BaseModel):
    """Everything a study run needs; unknown keys and wrong types are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="a shipped model name or 'package.module:function'")
    args: dict[str, Any] = Field(default_factory=dict, description="design sizes for the builder")
    datasets: int = Field(100, gt=0)
    chains: int = Field(4, gt=0)
    warmup: int = Field(500, ge=0)
    draws: int = Field(500, gt=0)
    batch_size: int = Field(16, gt=0)
    target_accept: float = Field(0.8, gt=0, lt=1)
    max_rank: int = Field(99, gt=0)
    init: Literal["prior", "advi", "pathfinder"] | None = None
    sampler: Literal["nuts", "blackjax"] = Field(
        "nuts", description="'nuts' (lanes that never wait) or 'blackjax' (the reference)")
    lanes: int | None = Field(None, gt=0, description="nuts: chains advanced together per device")
    alpha: float = Field(0.01, gt=0, lt=1, description="uniformity-test level after correction")
    seed: int = 0
    output: str = "hjax-results/study"
    x64: bool = False
    given: dict[str, float | list] = Field(default_factory=dict, description="recover: fixed")
    grid: dict[str, list[float]] = Field(default_factory=dict, description="recover: grid")
    replicates: int = Field(1, gt=0, description="recover: datasets per grid point")
    shrinkage: str | None = Field(None, description="recover: Level whose shrinkage to show")
    data: str | None = Field(None, description="fit: a JSON file of columns")

    @model_validator(mode="after")
    def _builder_exists(self):
        builder(self.model)
        return self


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


def build(config: StudyConfig):
    """(model, design) from the config's builder and args, with a clear error for bad args."""
    make = builder(config.model)
    accepted = inspect.signature(make).parameters
    unknown = sorted(set(config.args) - set(accepted))
    if unknown:
        raise ValueError(f"Model '{config.model}' takes no {unknown}; it takes "
                         f"{sorted(accepted)}.")
    return make(**config.args)


def load(path: str | Path, **overrides) -> StudyConfig:
    """Read and validate a YAML config; `overrides` (e.g. from the command line) win."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"No config file at {path}.")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings; got {type(raw).__name__}.")
    raw |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return StudyConfig(**raw)
    except ValidationError as error:
        lines = [f"{path}: invalid config:"]
        for problem in error.errors():
            where = ".".join(str(p) for p in problem["loc"]) or "config"
            lines.append(f"  {where}: {problem['msg']}")
        raise ValueError("\n".join(lines)) from None
