"""The NUTS kernels and what they step with: Stan's window adaptation, thinning, keys, the
in-loop progress report. Pure functions over named states; nothing here knows of chunks,
devices or datasets' results (that is `hjax.inference.run`)."""
