"""After a fit: convergence diagnostics, the fit as an ArviZ DataTree, predictive checks and
LOO. It reads fits; it does not run them (so `hjax.inference.run` builds on it)."""
