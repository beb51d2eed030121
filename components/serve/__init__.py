"""The model server: a KServe custom predictor for fareflow models (v1 and v2 protocols)."""
