"""Torch side of the toolkit: data, synthetic salamanders, model, training, evaluation."""

__version__ = "0.1.0"
