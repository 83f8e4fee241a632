"""Scoring a model on test samples and turning scores into the benchmark's metrics."""
