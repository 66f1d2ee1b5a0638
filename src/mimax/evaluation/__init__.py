"""Evaluation of frozen encoders: linear probe, kNN, and mean ± std result tables."""
