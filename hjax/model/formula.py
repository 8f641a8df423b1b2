"""Models from formulas researchers already write: `y ~ 1 + x + (1 + x | g) + (1 | item)`.

`formulae` (the parser Bambi uses) reads the formula and builds the design columns: treatment
contrasts for categorical predictors, interactions, offsets, and the columns of each
group-specific block. They compile to the modules a model is built from by hand: a `Fixed`
intercept and one `Fixed` slope per column, one `Level` per group-specific block (correlated
coefficients with an LKJ prior for `(1 + x | g)`, independent ones for `(1 + x || g)`), a
group that is a combination of columns for `(1 | g1:g2)`, so simulation, SBC and recovery work
unchanged. The blocks are found with one regular expression only because `formulae` has no
`||`; everything inside them is parsed by `formulae`.

Default priors are weakly informative and scaled to the data as Bambi scales them: for a
Gaussian response, the intercept ~ Normal(mean y, 2.5 sd y), a slope ~ Normal(0, 2.5 sd y /
sd x), a group sd ~ HalfNormal(2.5 sd y) and sigma ~ HalfStudentT(4, sd y); on the logit and
log scales the same with sd y = 1. A parameter with a formula of its own (`sigma="1 + x"`) is
predicted on its link scale (log for sigma, a, t0; logit for w), its intercept ~ Normal(log sd y,
1) for sigma; the RT parameters have HSSM-like defaults on their link scales. Without the
response (a design for a simulation study), mean y = 0 and sd y = 1. `print(model)` shows them;
`priors={"b_x": hj.Normal(0, 1)}` overrides by name: `u_g_sd` the sds of a block's
coefficients, `u_g_sd_x` one of them, `u_g_corr` the LKJ prior of their correlations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import formulae
import numpy as np
import pandas as pd
from formulae.transforms import TRANSFORMS

from hjax.errors import DataError, ModelError
from hjax.model.fixed import Fixed
from hjax.model.level import Level
from hjax.model.priors import HalfNormal, HalfStudentT, LKJCholesky, Normal, Prior
from hjax.model.terms import OBS, Const, Data, Term, exp, inv_logit

__all__ = ["FAMILIES", "formula"]

# A group-specific block: (expr | group) or (expr || group).
BLOCK = re.compile(r"\(\s*([^()|]+?)\s*(\|\|?)\s*([^()|]+?)\s*\)")


class Family(NamedTuple):
    """A likelihood's slots: the one the main formula predicts, the links of the others (by
    slot), whether it is on the data's scale (priors scaled by sd y), and its builder."""

    main: str
    links: dict[str, str]
    data_scale: bool
    build: object


def _gaussian(slots, response, options):
    from hjax.model.likelihoods import Gaussian

    return Gaussian(mu=slots["mu"], sigma=slots["sigma"], y=response)


def _bernoulli(slots, response, options):
    from hjax.model.likelihoods import BernoulliLogit

    return BernoulliLogit(slots["logit_p"], y=response)


def _binomial(slots, response, options):
    from hjax.model.likelihoods import Binomial

    if "trials" not in options:
        raise ModelError("family='binomial' needs trials='<column of trials>'.")
    return Binomial(slots["logit_p"], trials=Data(options["trials"]), y=response)


def _poisson(slots, response, options):
    from hjax.model.likelihoods import Poisson

    return Poisson(slots["log_rate"], y=response)


def _wiener(slots, response, options):
    from hjax.cognitive.likelihoods import Wiener

    return Wiener(**slots, rt=response, choice=options.get("choice", "choice"))


FAMILIES = {
    "gaussian": Family("mu", {"sigma": "exp"}, True, _gaussian),
    "bernoulli": Family("logit_p", {}, False, _bernoulli),
    "binomial": Family("logit_p", {}, False, _binomial),
    "poisson": Family("log_rate", {}, False, _poisson),
    "wiener": Family("v", {"a": "exp", "t0": "exp", "w": "inv_logit", "sv": "exp"}, False,
                     _wiener),
}
REQUIRED = {"gaussian": ("sigma",), "wiener": ("a", "t0")}
# RT models: intercepts on each parameter's own (link) scale, as HSSM's defaults.
WIENER_INTERCEPTS = {"v": Normal(0.0, 2.0), "a": Normal(0.0, 0.5), "t0": Normal(-1.6, 0.5),
                     "w": Normal(0.0, 1.0), "sv": Normal(-1.0, 1.0)}


class _Scale(NamedTuple):
    mean: float
    sd: float


def _name(label: str) -> str:
    """A parameter-name part from a design label, brms-style: c[q] -> cq."""
    return label.replace("[", "").replace("]", "").replace(" ", "")


def _frame(text: str, data) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame | Mapping):
        raise DataError(f"formula '{text}' takes its data as columns by name (a dict of "
                        f"arrays or a pandas DataFrame); got a {type(data).__name__}. Rows as "
                        "a list of dicts: pd.DataFrame(rows).")
    try:
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(dict(data))
    except ValueError as error:  # columns of different lengths, or only scalars
        raise DataError(f"the data of formula '{text}' are not columns of one length: "
                        f"{error}.") from None
    return frame.reset_index(drop=True)


def _bad_rows(values) -> np.ndarray:
    """Missing or infinite values: no row of a formula's data may be either."""
    bad = pd.isna(values)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        bad = bad | ~np.isfinite(np.asarray(values, dtype=float))
    return np.asarray(bad)


def _refuse_bad_rows(where: str, values) -> None:
    bad = _bad_rows(values)
    if bad.any():
        raise DataError(f"{where} has {int(bad.sum())} missing or infinite values at rows "
                        f"{np.flatnonzero(bad)[:5].tolist()}; drop or impute those rows first: "
                        "none is dropped silently.")


def _check_columns(text: str, frame: pd.DataFrame, names: set[str]) -> None:
    missing = sorted(n for n in names if n not in frame.columns)
    if missing:
        raise DataError(f"formula '{text}' names {missing}, which the data do not have; they "
                        f"have {sorted(frame.columns)}.")
    for name in sorted(names):
        _refuse_bad_rows(f"data['{name}'] (in formula '{text}')", frame[name])


def _design(text: str, frame: pd.DataFrame, whole: str):
    """formulae's design matrices of `text`, an unknown function named as the user wrote it."""
    try:
        return formulae.design_matrices(text, frame)
    except KeyError as error:  # formulae looks a call's function up by name
        raise ModelError(
            f"formula '{whole}' calls {error.args[0]}(), which formulas do not know; they "
            f"know {sorted(TRANSFORMS)} and NumPy's functions as np.log(x). Compute other "
            "transforms as a column of the data.") from None


def _variables(text: str) -> set[str]:
    """The data columns a right-hand side reads, as formulae reads them."""
    names = set()
    try:
        description = formulae.model_description(text)
    except Exception as error:  # noqa: BLE001 - formulae raises many kinds for bad syntax
        raise ModelError(f"formula '{text}' does not parse: {error}") from None
    for term in description.terms:
        names |= set(getattr(term, "var_names", set()) or set())
    return names


def _one_level_categoricals(text: str, frame, design) -> None:
    for name, term in design.common.terms.items():
        if term.kind in ("categoric", "interaction") and not term.labels:
            raise DataError(f"formula '{text}': '{name}' has a single level, so it cannot be a "
                            "predictor; drop it from the formula.")


class _Builder:
    """Builds one slot's predictor: its terms, the design columns they read, and the priors,
    with defaults scaled to the data and the user's overrides by name."""

    def __init__(self, frame, scale: _Scale, priors: Mapping[str, Prior], family: str):
        self.frame, self.scale, self.priors, self.family = frame, scale, priors, family
        self.columns: dict[str, np.ndarray] = {}
        self.coords: dict[str, tuple] = {}
        self.used: set[str] = set()

    def prior(self, name: str, default: Prior) -> Prior:
        self.used.add(name)
        return self.priors.get(name, default)

    def column(self, label: str, values, whole: str) -> str:
        # A transform can make values no data column has (np.log(x) of x <= 0).
        _refuse_bad_rows(f"the column {label} of formula '{whole}'",
                         np.asarray(values, dtype=float))
        self.columns[label] = np.asarray(values, dtype=float)
        return label

    def predictor(self, slot: str, text: str, shown: str, main: bool) -> Term:
        """The predictor of `slot` from the right-hand side `text` (`shown` in errors)."""
        prefix = "" if main else f"{slot}_"
        blocks = BLOCK.findall(text)
        # What is left once the blocks are out; an intercept is implied, as in lme4 and brms.
        common = " + ".join(p.strip() for p in BLOCK.sub("", text).split("+") if p.strip())
        common = common or "1"
        _check_columns(shown, self.frame, _variables(common) | {
            v for expr, _, group in blocks for v in _variables(f"{expr} + {group}")})
        terms = self.common(slot, prefix, common, shown)
        for expr, bar, group in blocks:
            terms.append(self.block(prefix, expr, bar, group, shown))
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    def common(self, slot, prefix, text, whole) -> list[Term]:
        design = _design(text, self.frame, whole)
        _one_level_categoricals(whole, self.frame, design)
        matrix = np.asarray(design.common.design_matrix, dtype=float)
        terms = []
        for name, term in design.common.terms.items():
            columns = matrix[:, design.common.slices[name]]
            if term.kind == "intercept":
                terms.append(Fixed(f"{prefix}Intercept", self.prior(
                    f"{prefix}Intercept", self.intercept_prior(slot))))
                continue
            for label, values in zip(term.labels, columns.T, strict=True):
                key = self.column(label, values, whole)
                if term.kind == "offset":
                    terms.append(Data(key))
                    continue
                sd = float(np.std(values)) or 1.0
                parameter = f"{prefix}b_{_name(label)}"
                terms.append(Fixed(parameter, self.prior(
                    parameter, Normal(0.0, 2.5 * self.scale.sd / sd)), predictors=key))
        return terms

    def intercept_prior(self, slot: str) -> Prior:
        if self.family == "wiener":
            return WIENER_INTERCEPTS[slot]
        if slot == "sigma":  # log sigma, when sigma has a formula of its own
            return Normal(float(np.log(self.scale.sd)), 1.0)
        return Normal(self.scale.mean, 2.5 * self.scale.sd)

    def block(self, prefix, expr, bar, group_text, whole) -> Level:
        variables = [v.strip() for v in group_text.split(":")]
        group = ":".join(variables)
        # Only the combinations that occur are groups (an empty group is only its prior).
        labels = (self.frame[variables[0]].to_numpy() if len(variables) == 1 else
                  self.frame[variables].astype(str).agg(":".join, axis=1).to_numpy())
        levels, index = np.unique(labels, return_inverse=True)
        self.coords[group] = tuple(levels.tolist())
        self.columns[group] = index
        design = _design(f"0 + ({expr} | {group_text})", self.frame, whole)
        predictors = []
        for name, term in design.group.terms.items():
            z = design.group[name]
            z = np.asarray(z.toarray() if hasattr(z, "toarray") else z, dtype=float)
            width = z.shape[1] // len(term.groups)
            # Each row has its values in its own group's block: summing the blocks gives them.
            values = z.reshape(len(z), len(term.groups), width).sum(axis=1)
            for j in range(width):
                if term.kind == "intercept":
                    predictors.append("1")
                    continue
                # A group with one row informs its slope only through the population (partial
                # pooling), as in brms and lme4: it is allowed.
                label = term.labels[j].split("|")[0]
                predictors.append(self.column(label, values[:, j], whole))
        name = f"{prefix}u_{group}" + ("" if "1" in predictors else
                                       "_" + "_".join(_name(p) for p in predictors))
        scale = self.prior(f"{name}_sd", HalfNormal(
            0.5 if self.family == "wiener" else 2.5 * self.scale.sd))
        if len(predictors) > 1:  # each coefficient's sd by name (brms: `sd` by `coef`)
            scales = tuple(self.prior(f"{name}_sd_{'Intercept' if p == '1' else _name(p)}",
                                      scale) for p in predictors)
            scale = scale if all(s == scale for s in scales) else scales
        corr = None
        if bar == "|" and len(predictors) > 1:  # (0 + x | g) is one slope: nothing to correlate
            corr = self.prior(f"{name}_corr", LKJCholesky(len(predictors), 1.0))
        return Level(name, group, scale=scale, predictors=tuple(predictors), corr=corr)


def _parameter_term(builder: _Builder, slot: str, value) -> Term:
    """The term of one of the family's other parameters: a number, a term as given, or a
    formula on the parameter's link scale."""
    if isinstance(value, int | float):
        return Const(float(value))
    if isinstance(value, Term):  # e.g. known standard errors: sigma=hj.Data("se")
        builder.columns |= {need.key: builder.frame[need.key].to_numpy()
                            for need in value.needs(OBS) if need.key in builder.frame.columns}
        return value
    if builder.family == "gaussian" and slot == "sigma" and str(value).strip() == "1":
        return Fixed("sigma", builder.prior("sigma", HalfStudentT(4.0, builder.scale.sd)))
    link = {"exp": exp, "inv_logit": inv_logit}[FAMILIES[builder.family].links[slot]]
    return link(builder.predictor(slot, str(value), f"{slot} ~ {value}", main=False))


def _response_values(spec: str, frame: pd.DataFrame, response: str) -> np.ndarray | None:
    """The response column as floats, checked; None for a design without it."""
    if response and not response.isidentifier() and response not in frame.columns:
        raise ModelError(f"formula '{spec}': the response '{response}' is not a column name; "
                         "transform it as a column of the data first.")
    if not response or response not in frame.columns:
        return None
    _refuse_bad_rows(f"data['{response}'] (the response of formula '{spec.strip()}')",
                     frame[response])
    return frame[response].to_numpy(dtype=float)


def _correlation_names(priors: Mapping[str, Prior]) -> dict[str, Prior]:
    """`priors` with a correlation prior under either name `print(model)` shows: the
    parameter's (`u_g_corr_chol`, its Cholesky factor) or the reported one's (`u_g_corr`)."""
    named = {}
    for name, prior in priors.items():
        key = name.removesuffix("_chol") if name.endswith("_corr_chol") else name
        if key in named:
            raise ModelError(f"priors gives '{key}' and '{key}_chol', one correlation prior "
                             "twice; keep one.")
        named[key] = prior
    return named


def formula(
    spec: str,
    data,
    *,
    family: str = "gaussian",
    priors: Mapping[str, Prior] | None = None,
    **parameters,
):
    """A model and its data columns from a formula (and one per other parameter).

    Args:
        spec: "response ~ predictors", e.g. "y ~ 1 + x + c + (1 + x | g) + (1 | item)";
            categorical columns get treatment contrasts; `a:b` and `a*b` interactions;
            `(1 | g1:g2)` a group per combination (nesting); `(1 + x | g)` correlated,
            `(1 + x || g)` independent coefficients; `offset(x)`.
        data: columns (a dict or a DataFrame): the design, with the response to fit it
            (without it, the columns are a design for `hj.sbc` / `hj.recover`).
        family: "gaussian", "bernoulli", "binomial" (with `trials="n"`), "poisson" or
            "wiener" (the response is the RT column; with `choice="choice"`).
        priors: priors by parameter name, replacing the defaults.
        **parameters: formulas (or numbers, or terms) for the family's other parameters, on
            their link scale: `sigma="1 + (1 | g)"` (Gaussian, log link; default "1": one
            sigma), `sigma=hj.Data("se")` (known standard errors), for Wiener `a`, `t0` (log
            links), `w` (logit; default 0.5) and `sv`.

    Returns:
        (model, columns): an `hj.Model` built from `Fixed` and `Level` terms, and the data
        columns it reads (design columns, group indices, the response if given).

    Example:
        >>> frame = {"y": [1.0, 2.0, 0.5, 1.5, 3.0, 2.5], "x": [0.0, 1, 0, 1, 0, 1],
        ...          "g": ["a", "a", "b", "b", "c", "c"]}
        >>> model, columns = hj.formula("y ~ 1 + x + (1 | g)", frame)
        >>> print(model.likelihood)
        Gaussian likelihood on y
          mu = Intercept + b_x * x + u_g[g]
          sigma = sigma
    """
    if family not in FAMILIES:
        raise ModelError(f"Unknown family '{family}'; expected one of {sorted(FAMILIES)}.")
    spec_family = FAMILIES[family]
    options = {k: parameters.pop(k) for k in ("trials", "choice") if k in parameters}
    if family == "wiener":
        options.setdefault("choice", "choice")
    unknown = sorted(set(parameters) - set(spec_family.links))
    if unknown:
        raise ModelError(f"family '{family}' has no parameters {unknown}; it takes "
                         f"{sorted(spec_family.links)} beside the main formula.")
    response, _, rhs = spec.partition("~")
    if not rhs.strip():
        raise ModelError(f"formula '{spec}' needs '~': 'y ~ 1 + x + (1 | g)'.")
    frame, response = _frame(spec, data), response.strip()
    y = _response_values(spec, frame, response)
    parameters = {k: "1" for k in REQUIRED.get(family, ())} | parameters
    scale = _Scale(float(np.mean(y)), float(np.std(y)) or 1.0) if (
        y is not None and spec_family.data_scale) else _Scale(0.0, 1.0)
    builder = _Builder(frame, scale, _correlation_names(priors or {}), family)
    slots = {spec_family.main: builder.predictor(spec_family.main, rhs.strip(), spec.strip(),
                                                 main=True)}
    for slot, value in parameters.items():
        slots[slot] = _parameter_term(builder, slot, value)
    unused = sorted(set(builder.priors) - builder.used)
    if unused:
        raise ModelError(f"priors for {unused}, which the model does not have; the names it "
                         f"takes are {sorted(builder.used)}.")
    likelihood = spec_family.build(slots, response or "y", options)
    from hjax.model.model import Model

    columns = dict(builder.columns)
    if y is not None:
        columns[response] = y
    for extra in options.values():
        if extra in frame.columns:
            columns[extra] = frame[extra].to_numpy()
    return Model(likelihood, coords=builder.coords), columns
