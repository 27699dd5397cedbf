#!/usr/bin/env bash
# Create the separate virtual environment the Quix Streams peer of bench.stream_peers runs in.
#
#   bash bench/quix_env.sh            # -> var/bench/quix-venv (ignored by git: /var/)
#   QUIX_VENV=/tmp/qv bash bench/quix_env.sh
#
# Quix Streams pins pydantic below the version this project uses, so it must never be
# installed into the project's own venv; bench/quix_peer.py imports nothing from the
# project and runs with this venv's python. Idempotent: a venv that already imports the
# wanted quixstreams version is left as it is (no network access needed then).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${QUIX_VENV:-$repo_root/var/bench/quix-venv}"
# 3.28 is the release the issue's reference figure was measured with.
spec="${QUIX_SPEC:-quixstreams==3.28.*}"
prefix="${QUIX_PREFIX:-3.28.}"

installed() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$prefix" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("quixstreams").startswith(sys.argv[1]) else 1)
PY
}

if installed; then
    echo "quixstreams $("$venv/bin/python" -c 'from importlib.metadata import version; print(version("quixstreams"))') already in $venv"
    exit 0
fi

python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$spec"
installed || { echo "quixstreams matching $spec did not install into $venv" >&2; exit 1; }
echo "installed $("$venv/bin/python" -c 'from importlib.metadata import version; print("quixstreams", version("quixstreams"))') into $venv"
