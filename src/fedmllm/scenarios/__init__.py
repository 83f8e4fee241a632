"""Heterogeneity scenarios: who holds which samples, which modalities they lost, how they are asked."""
