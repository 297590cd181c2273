"""Data generators and loaders: where each task's training set comes from."""
