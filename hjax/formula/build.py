"""`hj.formula`: a formula and its family compile to the modules a model is built from by hand.

A `Fixed` intercept and one `Fixed` slope per design column, one `Level` per group-specific
block (correlated coefficients with an LKJ prior for `(1 + x | g)`, independent ones for
`(1 + x || g)`), a group that is a combination of columns for `(1 | g1:g2)`; the family (see
`hjax.model.family`) builds the likelihood from the slots' terms. The blocks are found with one
regular expression only because `formulae` has no `||`; everything inside them is parsed by
`formulae`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from hjax.errors import ModelError
from hjax.formula.frame import (
    as_frame,
    check_columns,
    design_matrices,
    refuse_bad_rows,
    refuse_one_level_categoricals,
    response_values,
    variables,
)
from hjax.model import names
from hjax.model.family import Family, Moments, get_family
from hjax.model.fixed import Fixed
from hjax.model.level import Level
from hjax.model.model import Model
from hjax.model.names import INTERCEPT
from hjax.model.priors import AbstractPrior, HalfNormal, HalfStudentT, LKJCholesky, Normal
from hjax.model.terms import OBS, AbstractTerm, Const, Data

__all__ = ["formula"]

# A group-specific block: (expr | group) or (expr || group).
BLOCK = re.compile(r"\(\s*([^()|]+?)\s*(\|\|?)\s*([^()|]+?)\s*\)")


class _Builder:
    """Builds one slot's predictor: its terms, the design columns they read, and the priors,
    with the family's defaults scaled to the data and the user's overrides by name."""

    def __init__(self, frame, family: Family, moments: Moments,
                 priors: Mapping[str, AbstractPrior]):
        self.frame, self.family, self.moments, self.priors = frame, family, moments, priors
        self.defaults = family.default_priors(moments)
        self.columns: dict[str, np.ndarray] = {}
        self.coords: dict[str, tuple] = {}
        self.used: set[str] = set()

    def prior(self, name: str, default: AbstractPrior) -> AbstractPrior:
        """The user's prior of `name`, else the family's, else `default`."""
        self.used.add(name)
        return self.priors.get(name, self.defaults.get(name, default))

    def column(self, label: str, values, whole: str) -> str:
        # A transform can make values no data column has (np.log(x) of x <= 0).
        refuse_bad_rows(f"the column {label} of formula '{whole}'",
                        np.asarray(values, dtype=float))
        self.columns[label] = np.asarray(values, dtype=float)
        return label

    def predictor(self, slot: str, text: str, shown: str, main: bool) -> AbstractTerm:
        """The predictor of `slot` from the right-hand side `text` (`shown` in errors)."""
        prefix = "" if main else f"{slot}_"
        blocks = BLOCK.findall(text)
        # What is left once the blocks are out; an intercept is implied, as in lme4 and brms.
        common = " + ".join(p.strip() for p in BLOCK.sub("", text).split("+") if p.strip())
        common = common or "1"
        check_columns(shown, self.frame, variables(common) | {
            v for expr, _, group in blocks for v in variables(f"{expr} + {group}")})
        terms = self.common(prefix, common, shown)
        for expr, bar, group in blocks:
            terms.append(self.block(prefix, expr, bar, group, shown))
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    def common(self, prefix, text, whole) -> list[AbstractTerm]:
        design = design_matrices(text, self.frame, whole)
        refuse_one_level_categoricals(whole, design)
        matrix = np.asarray(design.common.design_matrix, dtype=float)
        scale = self.moments
        terms = []
        for name, term in design.common.terms.items():
            columns = matrix[:, design.common.slices[name]]
            if term.kind == "intercept":
                terms.append(Fixed(f"{prefix}Intercept", self.prior(
                    f"{prefix}Intercept", Normal(scale.mean, 2.5 * scale.sd))))
                continue
            for label, values in zip(term.labels, columns.T, strict=True):
                key = self.column(label, values, whole)
                if term.kind == "offset":
                    terms.append(Data(key))
                    continue
                sd = float(np.std(values)) or 1.0
                parameter = f"{prefix}b_{names.coefficient(label)}"
                terms.append(Fixed(parameter, self.prior(
                    parameter, Normal(0.0, 2.5 * scale.sd / sd)), predictors=key))
        return terms

    def block(self, prefix, expr, bar, group_text, whole) -> Level:
        variables = [v.strip() for v in group_text.split(":")]
        group = ":".join(variables)
        # Only the combinations that occur are groups (an empty group is only its prior).
        labels = (self.frame[variables[0]].to_numpy() if len(variables) == 1 else
                  self.frame[variables].astype(str).agg(":".join, axis=1).to_numpy())
        levels, index = np.unique(labels, return_inverse=True)
        self.coords[group] = tuple(levels.tolist())
        self.columns[group] = index
        design = design_matrices(f"0 + ({expr} | {group_text})", self.frame, whole)
        predictors = []
        for name, term in design.group.terms.items():
            z = design.group[name]
            z = np.asarray(z.toarray() if hasattr(z, "toarray") else z, dtype=float)
            width = z.shape[1] // len(term.groups)
            # Each row has its values in its own group's block: summing the blocks gives them.
            values = z.reshape(len(z), len(term.groups), width).sum(axis=1)
            for j in range(width):
                if term.kind == "intercept":
                    predictors.append(INTERCEPT)
                    continue
                # A group with one row informs its slope only through the population (partial
                # pooling), as in brms and lme4: it is allowed.
                label = term.labels[j].split("|")[0]
                predictors.append(self.column(label, values[:, j], whole))
        name = f"{prefix}u_{group}" + ("" if INTERCEPT in predictors else
                                       "_" + "_".join(names.coefficient(p) for p in predictors))
        return Level(name, group, scale=self.block_scale(name, predictors),
                     predictors=tuple(predictors), corr=self.block_corr(name, bar, predictors))

    def block_scale(self, name: str, predictors: list[str]):
        """The block's sd prior, or one per coefficient where the user gives them."""
        scale = self.prior(names.sd(name), HalfNormal(self.family.group_sd * self.moments.sd))
        if len(predictors) == 1:
            return scale
        scales = tuple(self.prior(names.coefficient_sd(name, p), scale) for p in predictors)
        return scale if all(s == scale for s in scales) else scales

    def block_corr(self, name: str, bar: str, predictors: list[str]):
        """The LKJ prior of a `|` block's correlations; None for `||` or one coefficient
        (`(0 + x | g)`: nothing to correlate)."""
        if bar != "|" or len(predictors) < 2:
            return None
        return self.prior(names.corr(name), LKJCholesky(len(predictors), 1.0))


def _parameter_term(builder: _Builder, slot: str, value) -> AbstractTerm:
    """The term of one of the family's other slots: a number, a term as given, or a formula
    on the slot's link scale."""
    if isinstance(value, int | float):
        return Const(float(value))
    if isinstance(value, AbstractTerm):  # e.g. known standard errors: sigma=hj.Data("se")
        builder.columns |= {need.key: builder.frame[need.key].to_numpy()
                            for need in value.needs(OBS) if need.key in builder.frame.columns}
        return value
    if slot in builder.family.scalars and str(value).strip() == "1":
        return Fixed(slot, builder.prior(slot, HalfStudentT(4.0, builder.moments.sd)))
    link = builder.family.links[slot]
    return link(builder.predictor(slot, str(value), f"{slot} ~ {value}", main=False))


def _correlation_names(priors: Mapping[str, AbstractPrior]) -> dict[str, AbstractPrior]:
    """`priors` with a correlation prior under either name `print(model)` shows: the
    parameter's (`u_g_corr_chol`, its Cholesky factor) or the reported one's (`u_g_corr`)."""
    named = {}
    for name, prior in priors.items():
        key = names.reported(name)
        if key in named:
            raise ModelError(f"priors gives '{key}' and '{key}_chol', one correlation prior "
                             "twice; keep one.")
        named[key] = prior
    return named


def _moments(family: Family, y: np.ndarray | None) -> Moments:
    """The response's mean and sd where the family's priors are on its scale, else (0, 1)."""
    if y is None or not family.data_scale:
        return Moments(0.0, 1.0)
    return Moments(float(np.mean(y)), float(np.std(y)) or 1.0)


def formula(
    spec: str,
    data,
    *,
    family: str | Family = "gaussian",
    priors: Mapping[str, AbstractPrior] | None = None,
    **parameters,
):
    """A model and its data columns from a formula (and one per other parameter).

    Default priors are weakly informative and scaled to the data as Bambi scales them (the
    family says whether it is on the data's scale, and may name its own): for a Gaussian
    response, the intercept ~ Normal(mean y, 2.5 sd y), a slope ~ Normal(0, 2.5 sd y / sd x),
    a group sd ~ HalfNormal(2.5 sd y); on the logit and log scales the same with sd y = 1.
    Without the response (a design for a simulation study), mean y = 0 and sd y = 1.
    `print(model)` shows them; `priors={"b_x": hj.Normal(0, 1)}` overrides by name: `u_g_sd`
    the sds of a block's coefficients, `u_g_sd_x` one of them, `u_g_corr` the LKJ prior of
    their correlations.

    Args:
        spec: "response ~ predictors", e.g. "y ~ 1 + x + c + (1 + x | g) + (1 | item)";
            categorical columns get treatment contrasts; `a:b` and `a*b` interactions;
            `(1 | g1:g2)` a group per combination (nesting); `(1 + x | g)` correlated,
            `(1 + x || g)` independent coefficients; `offset(x)`.
        data: columns (a dict or a DataFrame): the design, with the response to fit it
            (without it, the columns are a design for `hj.sbc` / `hj.recover`).
        family: a registered family's name, "gaussian", "bernoulli", "binomial" (with
            `trials="n"`), "poisson", "wiener" (the response is the RT column; with
            `choice="choice"`) or one registered with `hj.register_family`, or an `hj.Family`.
        priors: priors by parameter name, replacing the defaults.
        **parameters: formulas (or numbers, or terms) for the family's other slots, on their
            link scale, and its options: `sigma="1 + (1 | g)"` (Gaussian, log link; default
            "1": one sigma), `sigma=hj.Data("se")` (known standard errors), for Wiener `a`,
            `t0` (log links), `w` (logit; default 0.5) and `sv`.

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
    family = get_family(family)
    slots_given, options = family.arguments(parameters)
    response, _, rhs = spec.partition("~")
    if not rhs.strip():
        raise ModelError(f"formula '{spec}' needs '~': 'y ~ 1 + x + (1 | g)'.")
    frame, response = as_frame(spec, data), response.strip()
    y = response_values(spec, frame, response)
    builder = _Builder(frame, family, _moments(family, y), _correlation_names(priors or {}))
    slots = {family.main: builder.predictor(family.main, rhs.strip(), spec.strip(), main=True)}
    for slot, value in slots_given.items():
        slots[slot] = _parameter_term(builder, slot, value)
    unused = sorted(set(builder.priors) - builder.used)
    if unused:
        raise ModelError(f"priors for {unused}, which the model does not have; the names it "
                         f"takes are {sorted(builder.used)}.")
    return Model(family.build(slots, response or "y", options), coords=builder.coords), (
        _columns(builder, frame, response, y, options))


def _columns(builder: _Builder, frame: pd.DataFrame, response: str, y, options) -> dict:
    """The data columns the model reads: the design's, the response, the options' columns."""
    columns = dict(builder.columns)
    if y is not None:
        columns[response] = y
    for extra in options.values():
        if extra in frame.columns:
            columns[extra] = frame[extra].to_numpy()
    return columns
