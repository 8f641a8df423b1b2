"""How fits and studies run: one validated settings object for Python calls and YAML configs.

Every setting has its default here and nowhere else. `hj.sample(..., chains=2)`,
`hj.sbc(..., chains=2)` and a YAML key `chains: 2` all end up in `FitSettings` (or
`StudySettings`, the same fields with a study's defaults plus its own), checked once (types,
ranges, settings that belong to another sampler), with an error naming the setting.

Example:
    >>> settings = FitSettings(chains=2, draws=500)
    >>> settings.warmup_iterations
    1000
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["FitSettings", "StudySettings", "validated"]

WARMUP = 1000
WARM_START_WARMUP = 300
WARM_STARTS = ("advi", "pathfinder")


class FitSettings(BaseModel):
    """NUTS settings of a fit and how its datasets are laid out; frozen once validated.

    Attributes:
        sampler: "nuts" (chains as jobs on lanes that never wait for each other) or
            "blackjax" (BlackJAX's NUTS kernel vmapped: the reference).
        chains: chains per dataset.
        warmup: adaptation iterations per chain; None is 1000, or 300 after a warm start.
        draws: iterations kept per chain after warmup.
        target_accept: target mean acceptance probability of step-size adaptation.
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        max_tree_depth: NUTS's maximum number of trajectory doublings.
        init: None (Stan's uniform(-init_radius, init_radius), retried until finite),
            "prior" (prior draws, retried until finite), "advi" or "pathfinder" (a
            variational fit per dataset places the chains and seeds the mass matrix).
        init_radius: half-width of the uniform initialization in unconstrained space.
        batch_size: datasets per chunk (one compiled program); None is all of them, up to
            1024 per device.
        lanes: "nuts" only: chains advanced together on a device; None is 4 on CPU and all
            of a device's chains on an accelerator.
        vectorize: "blackjax" only: datasets vmapped together on a device; None is 1 on CPU
            and a device's whole share on an accelerator.
        devices: local devices to spread datasets over; None is all of them.
        save_warmup: also keep the warmup iterations.

    Example:
        >>> FitSettings(sampler="blackjax", vectorize=4).vectorize
        4
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["nuts", "blackjax"] = "nuts"
    chains: int = Field(4, ge=1)
    warmup: int | None = Field(None, ge=0)
    draws: int = Field(1000, ge=1)
    target_accept: float = Field(0.8, gt=0, lt=1)
    dense_mass: bool = False
    max_tree_depth: int = Field(10, ge=1)
    init: Literal["prior", "advi", "pathfinder"] | None = None
    init_radius: float = Field(2.0, gt=0)
    batch_size: int | None = Field(None, ge=1)
    lanes: int | None = Field(None, ge=1)
    vectorize: int | None = Field(None, ge=1)
    devices: int | None = Field(None, ge=1)
    save_warmup: bool = False

    @model_validator(mode="after")
    def _sampler_options(self) -> Self:
        if self.sampler == "nuts" and self.vectorize is not None:
            raise ValueError("vectorize applies to sampler='blackjax'; sampler='nuts' takes lanes")
        if self.sampler == "blackjax" and self.lanes is not None:
            raise ValueError("lanes applies to sampler='nuts'; sampler='blackjax' takes vectorize")
        return self

    @property
    def warmup_iterations(self) -> int:
        """`warmup`, or its default: 1000, or 300 after a variational warm start."""
        if self.warmup is not None:
            return self.warmup
        return WARM_START_WARMUP if self.init in WARM_STARTS else WARMUP


class StudySettings(FitSettings):
    """`FitSettings` with a study's defaults (500 warmup and 500 draws per chain, batches of
    16 datasets), and how ranks are taken.

    Attributes:
        batch_size: datasets per batch: one compiled program, one stored file, one unit of
            resumption and of sharding across workers.
        max_rank: the most thinned draws each SBC rank is taken among.

    Example:
        >>> StudySettings(chains=2).batch_size
        16
    """

    warmup: int | None = Field(500, ge=0)
    draws: int = Field(500, ge=1)
    batch_size: int = Field(16, ge=1)
    max_rank: int = Field(99, ge=1)


def validated[S: BaseModel](cls: type[S], where: str, base: S | None = None, **options) -> S:
    """`cls(**options)` on top of `base`'s values, with a one-line-per-problem ValueError
    that names each setting (`where` says who asked).

    Example:
        >>> validated(FitSettings, "hj.sample", chains=2).chains
        2
    """
    values = {} if base is None else base.model_dump(include=set(cls.model_fields))
    unknown = sorted(set(options) - set(cls.model_fields))
    if unknown:
        raise ValueError(f"{where}: unknown settings {unknown}; the settings are "
                         f"{sorted(cls.model_fields)}.")
    try:
        return cls(**(values | options))
    except ValidationError as error:
        raise ValueError(f"{where}: " + "; ".join(_problem(p) for p in error.errors())
                         + ".") from None


def _problem(problem: dict) -> str:
    where = ".".join(str(p) for p in problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    shown = f" (got {problem['input']!r})" if where else ""
    return f"{where}: {message}{shown}" if where else message
