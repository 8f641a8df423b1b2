"""Studies over many fits: SBC ranks, calibration tests, recovery metrics, plots and reports."""
