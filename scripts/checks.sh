#!/usr/bin/env bash
# usage: bash scripts/checks.sh        (scripts/test.sh runs it before pytest)
# The checks that hold the code's shape, each in seconds: ruff (lint rules and format,
# configured in pyproject.toml), import-linter (the layer contracts in pyproject.toml)
# and mypy (types of shared/). Needs the venv that scripts/bootstrap.sh builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
echo "checks: ruff check" >&2
"$bin/ruff" check --quiet .
echo "checks: ruff format --check" >&2
"$bin/ruff" format --check --quiet .
echo "checks: lint-imports" >&2
PYTHONPATH=$PWD "$bin/lint-imports" --no-logo --no-cache >/dev/null || PYTHONPATH=$PWD "$bin/lint-imports" --no-logo --no-cache
echo "checks: mypy" >&2
"$bin/mypy"
