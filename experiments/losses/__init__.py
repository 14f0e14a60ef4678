"""MAE vs MSE vs binary cross-entropy: ``python -m experiments.losses``."""
