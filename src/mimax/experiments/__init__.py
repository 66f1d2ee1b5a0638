"""Controlled experiments: the Gaussian-mixture study of the paper (Figures 2 and 3, claims)."""
