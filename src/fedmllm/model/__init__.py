"""Models: loading any image-text-to-text checkpoint with LoRA, and the built-in tiny model."""
