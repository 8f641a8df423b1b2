"""The formula family of the drift diffusion model (`hj.formula(..., family="wiener")`).
Importing this module registers it (`hjax.formula` does).

The response is the RT column, `choice="choice"` the choice column. `v` is the main formula's
slot; `a`, `t0` (log links, one intercept each unless given) and `w` (logit; 0.5 unless given)
and `sv` (log) take formulas of their own. Intercepts have HSSM-like defaults on their link
scales, group sds HalfNormal(0.5).

Example:
    >>> WIENER.main, sorted(WIENER.links), WIENER.default_priors(None)["t0_Intercept"]
    ('v', ['a', 'sv', 't0', 'w'], Normal(loc=-1.6, scale=0.5))
"""

from hjax.cognitive.likelihoods import Wiener
from hjax.model.family import Family, register_family
from hjax.model.priors import Normal
from hjax.model.terms import exp, inv_logit

__all__ = ["WIENER"]

WIENER = register_family(Family(
    "wiener", main="v", links={"a": exp, "t0": exp, "w": inv_logit, "sv": exp},
    required=("a", "t0"), options={"choice": "choice"}, group_sd=0.5,
    priors={"Intercept": Normal(0.0, 2.0), "a_Intercept": Normal(0.0, 0.5),
            "t0_Intercept": Normal(-1.6, 0.5), "w_Intercept": Normal(0.0, 1.0),
            "sv_Intercept": Normal(-1.0, 1.0)},
    build=lambda slots, response, options: Wiener(**slots, rt=response,
                                                  choice=options["choice"])))
