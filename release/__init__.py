"""moe-release: turn an expert-pruned MoE checkpoint into a complete, consistent public release."""

__version__ = "0.1.0"
