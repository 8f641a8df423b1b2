"""How fits and studies run: one validated settings object for Python calls and YAML configs.

Every setting has its default here and nowhere else. `hj.sample(..., chains=2)`,
`hj.sbc(..., chains=2)` and a YAML key `chains: 2` all end up in `FitSettings` (or
`StudySettings`, the same fields with a study's defaults plus its own), checked once (types,
ranges, settings that belong to another sampler; a bool is never a number), with a
`ConfigError` naming the setting. `settings=` may also be a dict of the fields.

The sampler and the initialisation are objects (`hj.LanesNUTS(lanes=4)`, `hj.InitPrior()`),
each class registered under the name YAML and strings use (`register`): a new sampler plugs
in by defining its class and registering it, without a change here. Their options may also be
given flat, as settings (`sampler="blackjax", vectorize=4`; `init_radius=1.0`).

Example:
    >>> settings = FitSettings(chains=2, draws=500)
    >>> settings.warmup_iterations
    1000
    >>> FitSettings(sampler="blackjax", vectorize=4).sampler
    BlackJAXNUTS(vectorize=4)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from functools import partial
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from hjax.errors import ConfigError

__all__ = ["RHAT_LIMIT", "Count", "Escalation", "FitSettings", "Number", "Settings",
           "StudySettings", "option", "register", "registered", "validated"]

WARMUP = 1000
WARM_START_WARMUP = 300
RHAT_LIMIT = 1.01  # the default largest R-hat a fit may have: warnings, refits, reports


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

# The classes each object-valued setting accepts, by the name YAML gives them; how its
# options are spelled flat, as settings (`lanes=4`, `init_radius=1.0`).
_REGISTRY: dict[str, dict[str, type]] = {"sampler": {}, "init": {}}
_FLAT_PREFIX = {"sampler": "", "init": "init_"}
# Settings before objects recorded init_radius beside every init (the config.json of earlier
# studies): where the initialisation has no radius it is ignored, as it always was.
_IGNORED_ELSEWHERE = {"init_radius"}


def register(kind: str) -> Callable[[type], type]:
    """A class decorator: settings `kind` ("sampler" or "init") accept the class under its
    `name` (a YAML value), its instances, and `{"name": ..., **options}`.

    Example:
        >>> sorted(registered("sampler"))
        ['blackjax', 'nuts']
    """
    def add(cls: type) -> type:
        _REGISTRY[kind][cls.name] = cls
        return cls
    return add


def registered(kind: str) -> dict[str, type]:
    """The classes registered for setting `kind`, by name, in registration order."""
    return dict(_REGISTRY[kind])


def option(name: str, kind: Any) -> Callable[[Any], Any]:
    """A converter (`eqx.field(converter=...)`) checking a sampler's or initialisation's
    option `name` as a setting is checked: `kind` is a type such as `Count | None`, with
    pydantic constraints (`Annotated[Count, Field(ge=1)]`).

    Example:
        >>> option("lanes", Annotated[Count, Field(ge=1)])(0)
        Traceback (most recent call last):
        ...
        hjax.errors.ConfigError: lanes: Input should be greater than or equal to 1 (got 0)
    """
    adapter = TypeAdapter(kind)

    def convert(value):
        try:
            return adapter.validate_python(value)
        except ValidationError as error:
            raise ConfigError("; ".join(f"{name}: {p}" for p in problems(error))
                              + f" (got {value!r:.60})") from None
    return convert


def _names(kind: str) -> str:
    names = [repr(name) for name in _REGISTRY[kind]]
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _options(value) -> dict:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _choose(kind: str, value):
    """The object a setting `kind` names: an instance, a registered name, or a dict of a name
    and options (`None` is the default initialisation, as before objects)."""
    classes = _REGISTRY[kind]
    if isinstance(value, tuple(classes.values())):
        return value
    value = "uniform" if value is None and kind == "init" else value
    options = dict(value) if isinstance(value, Mapping) else {}
    name = options.pop("name", None) if isinstance(value, Mapping) else value
    if not isinstance(name, str) or name not in classes:
        raise ConfigError(f"Input should be {_names(kind)}, or an object of those classes")
    return classes[name](**options)


def _describe(value) -> dict:
    """What settings record of a sampler or initialisation: its name and options."""
    return {"name": value.name, **_options(value)}


def Choice(kind: str):  # noqa: N802 (a type, as `Count` and `Number` are)
    """The type of setting `kind`: one of the classes registered for it (`register`)."""
    return Annotated[Any, BeforeValidator(partial(_choose, kind)),
                     PlainSerializer(_describe, return_type=dict)]


def _flat_keys(kind: str) -> dict[str, list[str]]:
    """Flat spelling of each option of the classes of setting `kind` -> the names taking it."""
    keys: dict[str, list[str]] = {}
    for name, cls in _REGISTRY[kind].items():
        for field in dataclasses.fields(cls):
            keys.setdefault(_FLAT_PREFIX[kind] + field.name, []).append(name)
    return keys


def flat_options() -> set[str]:
    """Every option of a registered sampler or initialisation spelled as a setting."""
    return {key for kind in _REGISTRY for key in _flat_keys(kind)}


def _with_flat(kind: str, chosen, flat: dict):
    """`chosen` (as settings accept it) with the options given flat (`lanes=4`) applied."""
    chosen, prefix = _choose(kind, chosen), _FLAT_PREFIX[kind]
    takes = [prefix + name for name in _options(chosen)]
    flat = {k: v for k, v in flat.items() if k in takes or k not in _IGNORED_ELSEWHERE}
    for key in flat:
        if key not in takes:
            owners = " or ".join(f"{kind}={name!r}" for name in _flat_keys(kind)[key])
            raise ConfigError(f"{key} applies to {owners}; {kind}={chosen.name!r} takes "
                              f"{', '.join(takes) or 'no options'}")
    try:
        return type(chosen)(**_options(chosen) | {k.removeprefix(prefix): v
                                                   for k, v in flat.items()})
    except ConfigError as error:  # named as the user spelled it
        raise ConfigError(prefix + str(error)) from None


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
    (`hjax.inference.workflow.diagnostics.stuck_chains`), or past the limits below. Every
    refit starts its chains anew, from its own key, and runs longer in both phases: a longer
    warmup and a higher target acceptance for the geometry (divergences), and longer chains
    thinned to the same number of draws for R-hat and ESS, which only more iterations improve.

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
    max_rhat: Number = Field(RHAT_LIMIT, gt=1)
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
        sampler: a registered sampler (`hjax.inference.run.samplers`): `hj.LanesNUTS()` ("nuts",
            the default: chains as jobs on lanes that never wait for each other; option
            `lanes`) or `hj.BlackJAXNUTS()` ("blackjax": BlackJAX's NUTS kernel vmapped, the
            reference; option `vectorize`).
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
        init: a registered initialisation: `hj.InitUniform(radius=2.0)` ("uniform", the
            default: Stan's uniform(-radius, radius), retried until finite), `hj.InitPrior()`
            ("prior": prior draws, retried until finite), `hj.ADVI()` or `hj.Pathfinder()`
            ("advi", "pathfinder": a variational fit per dataset places the chains and seeds
            the mass matrix). `init_radius` sets the radius.
        batch_size: datasets per chunk (one compiled program); None is all of them, up to
            1024 per device.
        devices: local devices to spread datasets over; None is all of them.
        save_warmup: also keep the warmup iterations.
        escalation: when a fit that fails its diagnostics is refitted, and how (`Escalation`);
            never by default for `hj.sample`, twice for studies.
        reduce: summarise rows that share their slot values per cell (an exact reduction of
            the likelihood; `hjax.model.reduction`), where it pays.

    Example:
        >>> FitSettings(sampler="blackjax", vectorize=4).sampler.vectorize
        4
        >>> FitSettings(init="advi", init_radius=1.0).init
        ADVI(radius=1.0)
    """

    sampler: Choice("sampler") = Field("nuts", validate_default=True)
    chains: Count = Field(4, ge=1)
    warmup: Count | None = Field(None, ge=0)
    draws: Count = Field(1000, ge=1)
    thin: Count = Field(1, ge=1)
    target_accept: Number = Field(0.8, gt=0, lt=1)
    dense_mass: bool = False
    max_tree_depth: Count = Field(10, ge=1)
    init: Choice("init") = Field("uniform", validate_default=True)
    batch_size: Count | None = Field(None, ge=1)
    devices: Count | None = Field(None, ge=1)
    save_warmup: bool = False
    escalation: Escalation = Field(default_factory=Escalation)
    reduce: bool = True

    @model_validator(mode="before")
    @classmethod
    def _flat_options(cls, values):
        """Options of the sampler and initialisation given flat (`lanes=4`) moved into them;
        one that another sampler takes is an error naming it."""
        if not isinstance(values, Mapping):
            return values
        values = dict(values)
        for kind in _REGISTRY:
            flat = {key: values.pop(key) for key in list(values) if key in _flat_keys(kind)}
            flat = {key: value for key, value in flat.items() if value is not None}
            if flat:
                values[kind] = _with_flat(kind, values.get(kind, cls.model_fields[kind].default),
                                          flat)
        return values

    @property
    def warmup_iterations(self) -> int:
        """`warmup`, or the initialisation's default: 1000, or 300 after a warm start."""
        if self.warmup is not None:
            return self.warmup
        return self.init.default_warmup


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
    unknown = sorted(set(options) - set(cls.model_fields) - flat_options())
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
