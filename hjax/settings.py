"""How fits and studies run: one validated settings object for Python calls and YAML configs.

Every setting has its default here and nowhere else. `hj.sample(..., chains=2)`,
`hj.sbc(..., chains=2)` and a YAML key `chains: 2` all end up in `FitSettings` (or
`StudySettings`, the same fields with a study's defaults plus its own), checked once (types,
ranges, settings that belong to another sampler; a bool is never a number), with a
`ConfigError` naming the setting. `settings=` may also be a dict of the fields.

Example:
    >>> settings = FitSettings(chains=2, draws=500)
    >>> settings.warmup_iterations
    1000
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, Self

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from hjax.errors import ConfigError

__all__ = ["Count", "Escalation", "FitSettings", "Number", "Settings", "StudySettings",
           "validated"]

WARMUP = 1000
WARM_START_WARMUP = 300
WARM_STARTS = ("advi", "pathfinder")


def _not_bool(value):
    # pydantic reads True as 1: `draws=True` (or YAML `draws: yes`) would fit one draw.
    if isinstance(value, bool | np.bool_):
        raise ConfigError("expected a number, not a boolean (YAML reads yes/no/on/off/true/"
                          "false as booleans); write the number")
    return value


Count = Annotated[int, BeforeValidator(_not_bool)]
"""A whole-number setting: an int (or a float without a fraction), never a bool."""
Number = Annotated[float, BeforeValidator(_not_bool)]
"""A real-valued setting: any number but a bool."""


def problems(error: ValidationError) -> list[str]:
    """One "setting: problem (got value)" line per problem of a pydantic error.

    Example:
        >>> try:
        ...     FitSettings.model_validate({"chains": 0})
        ... except ValidationError as error:
        ...     problems(error)
        ['chains: Input should be greater than or equal to 1 (got 0)']
    """
    return [_problem(p) for p in error.errors()]


class Settings(BaseModel):
    """A frozen pydantic model that refuses unknown fields and raises `ConfigError` (naming
    each field) where pydantic would raise its ValidationError.

    Example:
        >>> FitSettings(chains=0)
        Traceback (most recent call last):
        ...
        hjax.errors.ConfigError: FitSettings: chains: Input should be greater than or equal ...
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(f"{type(self).__name__}: " + "; ".join(problems(error))
                              + ".") from None

    # Only wraps the error: pydantic may keep validating nested settings and `model_validate`
    # calls without it (they raise ValidationError, for `validated` and `config.load` to name).
    __init__.__pydantic_base_init__ = True


class Escalation(Settings):
    """When a fit fails its diagnostics, and how it is refitted.

    A fit fails when a chain found no start or is stuck after warmup
    (`hjax.inference.diagnostics.stuck_chains`), or past the limits below. Every refit starts
    its chains anew, from its own key, and runs longer in both phases: a longer warmup and a
    higher target acceptance for the geometry (divergences), and longer chains thinned to the
    same number of draws for R-hat and ESS, which only more iterations improve.

    Attributes:
        attempts: refits allowed after the first fit (0: never refit).
        max_divergences: draws with a divergence after warmup a fit may have.
        max_rhat: the largest R-hat (rank-normalized, split) a fit may have.
        min_ess_bulk: the smallest bulk ESS (over all chains) a fit may have.
        warmup_factor: each attempt multiplies the warmup by this.
        accept_step: each attempt multiplies 1 - target_accept by this.
        thin_factor: each attempt multiplies `thin` by this (the iterations after warmup).

    Example:
        >>> policy = Escalation(attempts=2)
        >>> [policy.settings(FitSettings(warmup=500), k).warmup for k in (0, 1, 2)]
        [500, 1000, 2000]
        >>> [policy.settings(FitSettings(), k).target_accept for k in (0, 1, 2)]
        [0.8, 0.9, 0.95]
        >>> [policy.settings(FitSettings(), k).thin for k in (0, 1, 2)]
        [1, 2, 4]
    """

    attempts: Count = Field(0, ge=0)
    max_divergences: Count = Field(0, ge=0)
    max_rhat: Number = Field(1.01, gt=1)
    min_ess_bulk: Number = Field(100.0, ge=0)
    warmup_factor: Number = Field(2.0, ge=1)
    accept_step: Number = Field(0.5, gt=0, le=1)
    thin_factor: Count = Field(2, ge=1)

    def settings(self, settings, attempt: int):
        """The settings of attempt `attempt` (0 is the first fit): longer warmup, higher
        target acceptance, longer thinned chains."""
        if attempt == 0:
            return settings
        warmup = int(round(settings.warmup_iterations * self.warmup_factor**attempt))
        accept = 1 - (1 - settings.target_accept) * self.accept_step**attempt
        return settings.model_copy(update={"warmup": warmup, "target_accept": round(accept, 6),
                                           "thin": settings.thin * self.thin_factor**attempt})

    def failing(self, diagnostics) -> np.ndarray:
        """Per dataset (of `hj.diagnose` output): whether the fit fails the policy."""
        def values(name, fill):
            if name not in diagnostics:
                return np.full(np.shape(diagnostics["divergences"].values), fill)
            return np.asarray(diagnostics[name].values, dtype=float)

        rhat, ess = values("max_rhat", np.nan), values("min_ess_bulk", np.nan)
        return np.atleast_1d((values("init_failures", 0) > 0)
                             | (values("stuck_chains", 0) > 0)
                             | (values("divergences", 0) > self.max_divergences)
                             | ~(rhat <= self.max_rhat) | ~(ess >= self.min_ess_bulk))


class FitSettings(Settings):
    """NUTS settings of a fit and how its datasets are laid out; frozen once validated.

    Attributes:
        sampler: "nuts" (chains as jobs on lanes that never wait for each other) or
            "blackjax" (BlackJAX's NUTS kernel vmapped: the reference).
        chains: chains per dataset.
        warmup: adaptation iterations per chain; None is 1000, or 300 after a warm start.
        draws: draws kept per chain after warmup.
        thin: iterations per kept draw: `draws * thin` iterations follow the warmup and
            every `thin`-th is kept. A kept draw's statistics cover its `thin` iterations (a
            divergence or a tree-depth hit in any of them, their leapfrog steps summed, their
            mean acceptance), so thinning hides no divergence.
        target_accept: target mean acceptance probability of step-size adaptation.
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        max_tree_depth: NUTS's maximum number of trajectory doublings.
        init: None (Stan's uniform(-init_radius, init_radius), retried until finite),
            "prior" (prior draws, retried until finite), "advi" or "pathfinder" (a
            variational fit per dataset places the chains and seeds the mass matrix).
        init_radius: half-width of the uniform initialization in unconstrained space.
        batch_size: datasets per chunk (one compiled program); None is all of them, up to
            1024 per device.
        lanes: "nuts" only: chains advanced together on a device; None is all of a
            device's chains on an accelerator and, on CPU, 1 where the fitted model's loop
            compiles into one kernel (`hjax.inference.one_kernel`), else 4.
        vectorize: "blackjax" only: datasets vmapped together on a device; None is 1 on CPU
            and a device's whole share on an accelerator.
        devices: local devices to spread datasets over; None is all of them.
        save_warmup: also keep the warmup iterations.
        escalation: when a fit that fails its diagnostics is refitted, and how (`Escalation`);
            never by default for `hj.sample`, twice for studies.
        reduce: summarise rows that share their slot values per cell (an exact reduction of
            the likelihood; `hjax.model.reduction`), where it pays.

    Example:
        >>> FitSettings(sampler="blackjax", vectorize=4).vectorize
        4
    """

    sampler: Literal["nuts", "blackjax"] = "nuts"
    chains: Count = Field(4, ge=1)
    warmup: Count | None = Field(None, ge=0)
    draws: Count = Field(1000, ge=1)
    thin: Count = Field(1, ge=1)
    target_accept: Number = Field(0.8, gt=0, lt=1)
    dense_mass: bool = False
    max_tree_depth: Count = Field(10, ge=1)
    init: Literal["prior", "advi", "pathfinder"] | None = None
    init_radius: Number = Field(2.0, gt=0)
    batch_size: Count | None = Field(None, ge=1)
    lanes: Count | None = Field(None, ge=1)
    vectorize: Count | None = Field(None, ge=1)
    devices: Count | None = Field(None, ge=1)
    save_warmup: bool = False
    escalation: Escalation = Field(default_factory=Escalation)
    reduce: bool = True

    @model_validator(mode="after")
    def _sampler_options(self) -> Self:
        if self.sampler == "nuts" and self.vectorize is not None:
            raise ConfigError("vectorize applies to sampler='blackjax'; sampler='nuts' takes lanes")
        if self.sampler == "blackjax" and self.lanes is not None:
            raise ConfigError("lanes applies to sampler='nuts'; sampler='blackjax' takes vectorize")
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
        escalation: by default two refits of each fit that fails its diagnostics.
        loo: record each fit's PSIS-LOO (`elpd_loo`, `p_loo`, `high_pareto_k`).
        sensitivity: record each scalar's power-scaling sensitivity to the prior and to the
            likelihood (`prior_sensitivity`, `likelihood_sensitivity`).

    Example:
        >>> StudySettings(chains=2).batch_size
        16
    """

    warmup: Count | None = Field(500, ge=0)
    draws: Count = Field(500, ge=1)
    batch_size: Count = Field(16, ge=1)
    max_rank: Count = Field(99, ge=1)
    loo: bool = False
    sensitivity: bool = False
    escalation: Escalation = Field(default_factory=lambda: Escalation(attempts=2))


def validated[S: BaseModel](cls: type[S], where: str, base: S | Mapping | None = None,
                            **options) -> S:
    """`cls(**options)` on top of `base`'s values (settings, or a dict of their fields), with a
    `ConfigError` naming each setting (`where` says who asked).

    Example:
        >>> validated(FitSettings, "hj.sample", {"chains": 2}, draws=10).chains
        2
        >>> validated(FitSettings, "hj.sample", chains=0)
        Traceback (most recent call last):
        ...
        hjax.errors.ConfigError: hj.sample: chains: Input should be greater than or equal to 1 ...
    """
    if base is None or isinstance(base, Mapping):
        options = {**(base or {}), **options}
        values = {}
    elif isinstance(base, BaseModel):
        values = base.model_dump(include=set(cls.model_fields))
    else:
        raise ConfigError(f"{where}: settings must be hj.{cls.__name__}(...) or a dict of its "
                          f"fields; got {type(base).__name__} {base!r:.60}.")
    unknown = sorted(set(options) - set(cls.model_fields))
    if unknown:
        raise ConfigError(f"{where}: unknown settings {unknown}; the settings are "
                          f"{sorted(cls.model_fields)}.")
    try:
        # model_validate, not cls(...): the problems are named after `where`, not the class.
        return cls.model_validate(values | options)
    except ValidationError as error:
        raise ConfigError(f"{where}: " + "; ".join(problems(error)) + ".") from None


def count(value, name: str, where: str, minimum: int = 1) -> int:
    """`value` as an int of at least `minimum`, or a `ConfigError` naming `name`: a bool or a
    fractional number is no count.

    Example:
        >>> count(8, "n_datasets", "hj.sbc")
        8
        >>> count(True, "n_datasets", "hj.sbc")
        Traceback (most recent call last):
        ...
        hjax.errors.ConfigError: hj.sbc: n_datasets must be a whole number of at least 1; ...
    """
    if (isinstance(value, int | np.integer) and not isinstance(value, bool)
            and value >= minimum):
        return int(value)
    raise ConfigError(f"{where}: {name} must be a whole number of at least {minimum}; got "
                      f"{type(value).__name__} {value!r:.60}.")


def _problem(problem: dict) -> str:
    where = ".".join(str(p) for p in problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    shown = f" (got {problem['input']!r})" if where else ""
    return f"{where}: {message}{shown}" if where else message
