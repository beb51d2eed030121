"""fareflow pipeline components: one sub-package per step (core / CLI / kfp wrapper)."""
