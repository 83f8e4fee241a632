"""Offline generators that write the published layouts of the benchmark's datasets."""
