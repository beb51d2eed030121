"""Sample step: reproducible train/validation/test splits with a statistical check."""
