"""Datasets: the in-memory container, the project's .npz format, readers and the generator."""

from .dataset import SignalDataset, load_npz, save_npz  # noqa: F401
