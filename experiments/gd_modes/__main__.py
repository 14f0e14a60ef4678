"""``python -m experiments.gd_modes``: runs the study in :mod:`experiments.gd_modes.run`."""

from experiments.gd_modes.run import main

if __name__ == "__main__":
    main()
