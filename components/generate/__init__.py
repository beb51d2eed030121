"""Synthetic DC taxi trip files in the published format, with a known fare model."""

from .core import GenerateConfig, GenerateResult, generate

__all__ = ["GenerateConfig", "GenerateResult", "generate"]
