"""`preview`: the first few values of a list, for error messages (a leaf: imports no hjax)."""

import numpy as np

__all__ = ["preview"]


def preview(values, limit=5) -> str:
    """The first values of a list for an error message.

    Example:
        >>> preview(list(range(8)))
        '[0, 1, 2, 3, 4, ... (8 in all)]'
    """
    # As the user wrote them: 42 and 'a', not np.int64(42) and np.str_('a').
    values = [v.item() if isinstance(v, np.generic) else v for v in np.asarray(
        values, dtype=object).ravel()]
    more = f", ... ({len(values)} in all)" if len(values) > limit else ""
    return "[" + ", ".join(map(repr, values[:limit])) + more + "]"
