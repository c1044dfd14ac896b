#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: the Debian packages it needs, the test tools in a
# venv (.venv: Debian's python3 refuses pip outside one), ruff, pytest (lab tests included;
# VFIOKIT_SKIP_LAB=1 skips them locally). Then the suite again, without the lab, in .venv-debian12
# pinned to the click, rich and proxmoxer Debian 12 (Proxmox VE 8) ships, so the code cannot use a
# newer API by accident. VFIOKIT_SKIP_DEBIAN12=1 skips that second run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh test
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -m ruff check src tests bench lab scripts
.venv/bin/python -m pytest -q "$@"
if [ -z "${VFIOKIT_SKIP_DEBIAN12:-}" ]; then
  [ -x .venv-debian12/bin/python ] || python3 -m venv .venv-debian12
  # bookworm: python3-click 8.1.3-2, python3-rich 13.3.1-1, python3-proxmoxer 1.2.0-2,
  # python3-requests 2.28.1 (apt-cache policy on Debian 12)
  .venv-debian12/bin/python -m pip install -q -e . click==8.1.3 rich==13.3.1 proxmoxer==1.2.0 \
    requests==2.28.1 'pytest>=8' 'hypothesis>=6.100'
  echo "Debian 12's click 8.1.3, rich 13.3.1, proxmoxer 1.2.0:"
  .venv-debian12/bin/python -m pytest -q -p no:cacheprovider -m "not lab" "$@"
fi
