"""The text kind: Hugging Face encoder classifiers (full, head-only or LoRA fine-tunes)."""
