"""Diffusion models the benchmark trains itself, and adapters over external ones."""
