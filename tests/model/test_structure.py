"""Abstract-or-final: bases hold shared code and cannot be built; concrete classes are final."""

import equinox as eqx
import pytest

import hjax as hj
import hjax.cognitive.likelihoods  # noqa: F401 - registers its classes for the walk below
from hjax.model.level import AbstractLevel
from hjax.model.priors import AbstractSymmetric
from hjax.model.scales import AbstractScale
from hjax.model.terms import AbstractSum

PACKAGES = ("hjax.model", "hjax.cognitive")


def _is_abstract(cls) -> bool:
    return bool(cls.__abstractmethods__ or cls.__abstractvars__ or cls.__abstractclassvars__)


def _module_classes():
    found, stack = set(), [eqx.Module]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return [cls for cls in found if cls.__module__.startswith(PACKAGES)]


def test_no_concrete_class_is_subclassed():
    classes = _module_classes()
    assert hj.Level in classes and hj.Nested in classes and hj.SDT in classes
    # Model stays concrete so that tests can subclass it to count traces.
    subclassed = {base for cls in classes for base in cls.__mro__[1:]
                  if base in classes and base is not hj.Model and not _is_abstract(base)}
    assert not subclassed, sorted(cls.__name__ for cls in subclassed)


@pytest.mark.parametrize("base", [hj.Term, hj.Prior, hj.Constraint, hj.Likelihood, AbstractLevel,
                                  AbstractSum, AbstractSymmetric, AbstractScale])
def test_abstract_bases_cannot_be_built(base):
    assert _is_abstract(base)
    with pytest.raises(TypeError, match="abstract"):
        base()


def test_level_and_nested_share_one_base_and_crossed_shares_sums_code():
    assert issubclass(hj.Nested, AbstractLevel) and not issubclass(hj.Nested, hj.Level)
    assert issubclass(hj.Crossed, AbstractSum) and issubclass(hj.Sum, AbstractSum)
    for method in ("__call__", "has_intercept", "__str__"):
        assert getattr(hj.Crossed, method) is getattr(AbstractSum, method)


@pytest.mark.parametrize(("prior", "text", "support"), [
    (hj.Normal(0, 5), "Normal(0, 5)", "real"),
    (hj.HalfNormal(1.0), "HalfNormal(1)", "positive"),
    (hj.StudentT(3.0, 0.0, 2.5), "StudentT(3, 0, 2.5)", "real"),
    (hj.HalfStudentT(3.0, 1.0), "HalfStudentT(3, 1)", "positive"),
    (hj.Cauchy(0.0, 2.5), "Cauchy(0, 2.5)", "real"),
    (hj.HalfCauchy(5.0), "HalfCauchy(5)", "positive"),
    (hj.Exponential(1.0), "Exponential(1)", "positive"),
    (hj.Gamma(2.0, 1.0), "Gamma(2, 1)", "positive"),
    (hj.LogNormal(0.0, 1.0), "LogNormal(0, 1)", "positive"),
    (hj.Beta(2.0, 2.0), "Beta(2, 2)", "interval(0, 1)"),
    (hj.Uniform(0.1, 1.0), "Uniform(0.1, 1)", "interval(0.1, 1)"),
    (hj.LKJCholesky(dim=2, eta=2), "LKJCholesky(dim=2, eta=2)", "corr_cholesky"),
])
def test_prior_text_and_support(prior, text, support):
    assert str(prior) == text and str(prior.support) == support


@pytest.mark.parametrize(("make", "message"), [
    (lambda: hj.Normal(0.0, -1.0), "Normal needs scale > 0; got scale=-1.0."),
    (lambda: hj.HalfCauchy(0.0), "HalfCauchy needs scale > 0; got scale=0.0."),
    (lambda: hj.StudentT(-1.0), "StudentT needs df > 0; got df=-1.0."),
    (lambda: hj.Gamma(1.0, 0.0), "Gamma needs rate > 0; got rate=0.0."),
    (lambda: hj.Beta(1.0, -2.0), "Beta needs b > 0; got b=-2.0."),
    (lambda: hj.LKJCholesky(2, 0.0), "LKJCholesky needs eta > 0; got eta=0.0."),
])
def test_non_positive_parameters_refused_with_their_name(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message
