"""Datasets: the built-in ones (no download) and users' .npz files."""
