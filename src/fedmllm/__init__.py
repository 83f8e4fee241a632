"""fedmllm: federated LoRA fine-tuning of multimodal LLMs on modality-heterogeneous data."""

__version__ = "0.1.0"
