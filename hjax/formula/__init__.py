"""Models from formulas researchers already write: `y ~ 1 + x + (1 + x | g) + (1 | item)`.

The formula layer sits above the model and cognitive layers: it imports the families they
define (which registers them) and compiles a formula to their modules. `formulae` (the parser
Bambi uses) reads the formula and builds the design columns.

Example:
    >>> "wiener" in hj.registered_families() and "gaussian" in hj.registered_families()
    True
"""

# Imported for their registrations: the built-in families, where their likelihoods live.
import hjax.cognitive.families  # noqa: F401
import hjax.model.families  # noqa: F401
from hjax.formula.build import formula
from hjax.model.family import Family, Moments, get_family, register_family, registered_families

__all__ = ["Family", "Moments", "formula", "get_family", "register_family",
           "registered_families"]
