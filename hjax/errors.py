"""The errors hjax raises on purpose: what a user gave is wrong, or recorded work failed.

A `UserInputError` names the input and the fix; it is a `ValueError`, so `except ValueError`
keeps catching it. The `hjax` command prints these (and `BatchesFailedError`) in one line;
anything else is a bug in hjax and keeps its traceback. Code branches on these classes, never
on a message's text.

Example:
    >>> import hjax as hj
    >>> try:
    ...     hj.Model(hj.Gaussian(mu=hj.Fixed("mu"), sigma=1.0), coords={"g": 0})
    ... except hj.errors.UserInputError as error:
    ...     print(type(error).__name__)
    ModelError
"""

from __future__ import annotations

__all__ = ["BatchesFailedError", "ConfigError", "DataError", "ModelError",
           "StudyDirectoryError", "UserInputError"]


class UserInputError(ValueError):
    """Something the user gave cannot be used; the message names it and the fix."""


class DataError(UserInputError):
    """Data (columns, group indices, labels, held values) that the model cannot take."""


class ModelError(UserInputError):
    """A model, likelihood, prior or formula that cannot be built or fitted as written."""


class ConfigError(UserInputError):
    """Settings or a YAML config with a value of the wrong kind or out of range."""


class StudyDirectoryError(UserInputError):
    """A study directory that holds another study, is unreadable, or cannot be written."""


class BatchesFailedError(RuntimeError):
    """Batches of a study failed; each one's error and traceback are recorded in the study's
    directory (`failed-*.json`), the other batches are stored, and a re-run fits the rest."""
