#!/usr/bin/env bash
# The README's test command: set up .venv when needed, lint, then run pytest with any extra arguments.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
ruff check .
ruff format --check .
python -m pytest "$@"
