"""Posterior quality of one fit, computed the same way for every library (arviz_stats)."""

from __future__ import annotations

import arviz_stats
import numpy as np
import xarray as xr


def as_dataset(draws: dict[str, np.ndarray]) -> xr.Dataset:
    """Draws shaped (chain, draw, ...) as an xarray Dataset with dims (chain, draw, name_0...)."""
    return xr.Dataset({
        name: (("chain", "draw") + tuple(f"{name}_{i}" for i in range(value.ndim - 2)), value)
        for name, value in draws.items()
    })


def quality(posterior: xr.Dataset) -> dict[str, float]:
    """Bulk ESS (min and mean over every scalar parameter), its min per draw, and max R-hat."""
    ess = arviz_stats.ess(posterior, method="bulk")
    rhat = arviz_stats.rhat(posterior)
    values = np.concatenate([np.ravel(ess[k].values) for k in ess.data_vars])
    total = posterior.sizes["chain"] * posterior.sizes["draw"]
    return {
        "min_ess_bulk": float(np.min(values)),
        "mean_ess_bulk": float(np.mean(values)),
        "min_ess_per_draw": float(np.min(values)) / total,
        "max_rhat": float(max(np.max(rhat[k].values) for k in rhat.data_vars)),
    }
