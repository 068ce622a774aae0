"""Training, data and benchmark-dataset tests."""
