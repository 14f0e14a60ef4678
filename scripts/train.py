"""``python scripts/train.py [hydra overrides]`` — the same as the ``gdtorch-train`` command."""

from gdtorch.cli import main

if __name__ == "__main__":
    main()
