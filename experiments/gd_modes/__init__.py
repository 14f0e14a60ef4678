"""Batch vs stochastic vs mini-batch gradient descent: ``python -m experiments.gd_modes``."""
