"""tvr.features: the feature store (per-video tensors + SQLite manifest) and `extract_features`."""
