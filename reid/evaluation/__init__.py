"""Measuring: closed-set metrics, open-set metrics (rank-1, AUROC, FMR thresholds), the
per-lighting protocol, the leave-one-individual-out benchmark and its plots."""
