"""Flower apps. Only this package imports flwr: it converts tensors <-> records and moves messages."""
