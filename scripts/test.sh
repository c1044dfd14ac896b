#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: system packages, the package with its test
# extras, ruff, then pytest (lab tests included; VFIOKIT_SKIP_LAB=1 skips them locally).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
python3 -m pip install -q -e '.[test]'
python3 -m ruff check src tests bench lab
python3 -m pytest -q "$@"
