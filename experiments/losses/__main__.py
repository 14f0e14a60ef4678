"""``python -m experiments.losses``: runs the study in :mod:`experiments.losses.run`."""

from experiments.losses.run import main

if __name__ == "__main__":
    main()
