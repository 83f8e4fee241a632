"""Datasets in their native published layouts, and offline synthetic twins that write them."""

from fedmllm.data.registry import DATASETS, load_split, resolve_folder
from fedmllm.data.sample import Sample

__all__ = ["DATASETS", "Sample", "load_split", "resolve_folder"]
