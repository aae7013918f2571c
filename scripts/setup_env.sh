#!/usr/bin/env bash
# Create ./.venv and install BackSplit with nnU-Net (torch by nnU-Net's rule) and the test tools.
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating virtual environment .venv"
  "$python" -m venv .venv
fi
stamp=".venv/.backsplit-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== installing BackSplit, nnU-Net v2, PyTorch and the test tools into .venv (first time: several minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[nnunet,test]"
  echo "$want" > "$stamp"
fi
