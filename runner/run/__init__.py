"""A training run on disk: its directory, metrics, plot, provenance and summary."""
