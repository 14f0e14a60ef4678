#!/usr/bin/env bash
# The README's train command: set up .venv when needed, then train with any Hydra overrides,
# e.g. `bash scripts/train.sh model=logistic data.mode=batch`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# Run from the caller's directory: outputs/ and relative paths (data.root, ckpt_path) are there.
python "$ROOT/scripts/train.py" "$@"
