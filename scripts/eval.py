"""``python scripts/eval.py ckpt_path=… [hydra overrides]`` — the same as ``gdtorch-eval``."""

from gdtorch.cli import eval_main

if __name__ == "__main__":
    eval_main()
