#!/usr/bin/env bash
# One command: set up ./.venv and run the whole test-suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
echo "== ruff (lint: pyflakes, import order, bugbear; settings in pyproject.toml)"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest Testing "$@"
