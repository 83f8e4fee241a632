"""Benchmark matrices, result tables and plots."""
