"""Logistic regression vs 2-layer vs 4-layer network: ``python -m experiments.architectures``."""
