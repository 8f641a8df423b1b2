"""The names of a level's parameters and dims, defined once.

`Level` and `Nested` name what they add to a fit here, formulas name their priors by the same
functions, and recovery studies find a level's sd by them: a name changed here changes
everywhere it is read.

Example:
    >>> from hjax.model import names
    >>> names.sd("u_g"), names.coefficient_sd("u_g", "1"), names.corr("u_g")
    ('u_g_sd', 'u_g_sd_Intercept', 'u_g_corr')
"""

INTERCEPT = "1"  # the predictor of an intercept, as a level's `predictors` name it


def sd(level: str) -> str:
    """The population sd of a level (one per coefficient of a multivariate level)."""
    return f"{level}_sd"


def coefficient(predictor: str) -> str:
    """A name part from a predictor or a design label, brms-style: "1" -> Intercept,
    c[q] -> cq."""
    if predictor == INTERCEPT:
        return "Intercept"
    return predictor.replace("[", "").replace("]", "").replace(" ", "")


def coefficient_sd(level: str, predictor: str) -> str:
    """The sd of one coefficient of a multivariate level, as formulas take its prior
    (brms: `sd` by `coef`)."""
    return f"{sd(level)}_{coefficient(predictor)}"


def z(level: str) -> str:
    """The standard-normal draws of a non-centered level."""
    return f"{level}_z"


def corr(level: str) -> str:
    """The correlations of a multivariate level's coefficients, as reported."""
    return f"{level}_corr"


def corr_chol(level: str) -> str:
    """The Cholesky factor of those correlations: the parameter sampled."""
    return f"{corr(level)}_chol"


def reported(name: str) -> str:
    """The reported name of a parameter: a correlation's Cholesky factor is reported as the
    correlations; any other name is itself.

    Example:
        >>> reported("u_g_corr_chol"), reported("u_g_sd")
        ('u_g_corr', 'u_g_sd')
    """
    return name.removesuffix("_chol") if name.endswith("_corr_chol") else name


def coef_dim(level: str) -> str:
    """The dim of a multivariate level's coefficients."""
    return f"{level}_coef"


def coef2_dim(level: str) -> str:
    """The second coefficient dim of the correlations' Cholesky factor."""
    return f"{level}_coef2"


def pair_dim(level: str) -> str:
    """The dim of the reported correlations, one per pair of coefficients."""
    return f"{level}_pair"


def parent_index(group: str, parent_group: str) -> str:
    """The data column of each child group's parent group (a `Nested` level's)."""
    return f"{group}_in_{parent_group}"
