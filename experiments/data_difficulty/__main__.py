"""``python -m experiments.data_difficulty``: runs :mod:`experiments.data_difficulty.run`."""

from experiments.data_difficulty.run import main

if __name__ == "__main__":
    main()
