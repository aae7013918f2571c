#!/usr/bin/env bash
# One command: set up ./.venv and run the end-to-end demo (see README.md). Extra arguments go to `backsplit demo`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec .venv/bin/backsplit demo --overwrite "$@"
