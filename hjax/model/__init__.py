"""Model building blocks: priors, constraints, terms, likelihoods and the Model."""
