"""How hard is ``SyntheticCats``? ``python -m experiments.data_difficulty``."""
