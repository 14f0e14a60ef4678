"""``python -m experiments.architectures``: runs :mod:`experiments.architectures.run`."""

from experiments.architectures.run import main

if __name__ == "__main__":
    main()
