"""The `shopflow` command as a person meets it: every verb answers --help, and a user's
mistake is one line on stderr with exit status 2, never a traceback. Runs the real
`python -m jobs.cli` in a subprocess; every error here is caught before Spark, a broker
or a model would start."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import cli

REPO_ROOT = Path(__file__).resolve().parents[2]


def shopflow(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "SHOPFLOW_MODELS__REGISTRY_ROOT": str(tmp_path / "registry"),
        "SHOPFLOW_LAKE__ROOT": str(tmp_path / "lake"),
        "SHOPFLOW_METRICS_DIR": str(tmp_path / "metrics"),
    }
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120
    )


def test_top_level_help_is_fast_and_lists_every_verb(tmp_path: Path) -> None:
    started = time.monotonic()
    done = shopflow("--help", tmp_path=tmp_path)
    assert done.returncode == 0 and time.monotonic() - started < 5  # no Spark, torch or Kafka import
    for verb in cli.COMMANDS:
        assert f"  {verb}" in done.stdout


def test_unknown_verb_is_one_line_exit_2(tmp_path: Path) -> None:
    done = shopflow("nope", tmp_path=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "shopflow: unknown command 'nope'; run `shopflow --help` for the list"
    ]


def test_every_verb_module_has_a_main() -> None:
    for module, _ in cli.COMMANDS.values():
        assert callable(importlib.import_module(module).main), module


@pytest.mark.parametrize("verb", list(cli.COMMANDS))
def test_every_verb_answers_help(verb: str, tmp_path: Path) -> None:
    done = shopflow(verb, "--help", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower() and "Traceback" not in done.stderr


# verb -> (argv, what the one line must say). Each is a mistake a person makes; all are
# detected before Spark, a broker or a model starts.
MISTAKES: dict[str, tuple[list[str], str]] = {
    "pipeline": (["pipeline", "--bogus"], "unrecognized arguments: --bogus"),
    "ingest": (["ingest", "--bogus"], "unrecognized arguments: --bogus"),
    "clean": (["clean", "--table", "nope"], "invalid choice: 'nope'"),
    "features": (["features", "--bogus"], "unrecognized arguments: --bogus"),
    "train": (["train", "--task", "propensity", "--table-path", "/nonexistent/gold"], "no gold table"),
    "models": (["models", "show", "propensity", "7"], "no version 7"),
    "score": (["score", "--task", "propensity"], "has no 'champion'"),
    "broker": (["broker", "restart"], "invalid choice: 'restart'"),
    "replay": (["replay", "--source", "nope"], "invalid choice: 'nope'"),
    "worker": (["worker", "--bogus"], "unrecognized arguments: --bogus"),
    "fold": (["fold", "--bogus"], "unrecognized arguments: --bogus"),
    "retrain": (["retrain"], "no gold table"),  # no champion is no error: it trains from scratch
    "loop": (["loop", "--once", "--interval", "5m"], "--once and --interval exclude each other"),
    "demo": (["demo", "--cutoff", "yesterday"], "is not an ISO-8601 time"),
    "privacy": (["privacy", "forget"], "invalid choice: 'forget'"),
    "runs": (["runs", "--limit", "0"], "--limit must be at least 1 (got 0)"),
    "maintain": (["maintain", "--keep-last-versions", "0"], "--keep-last-versions must be at least 1"),
}
# Every verb's arguments come from shared.options: a mistake is exactly one line.
ONE_LINE = set(cli.COMMANDS)


@pytest.mark.parametrize("verb", list(cli.COMMANDS))
def test_every_verb_reports_a_mistake_in_one_line(verb: str, tmp_path: Path) -> None:
    argv, says = MISTAKES[verb]
    done = shopflow(*argv, tmp_path=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and lines, done.stderr
    assert lines[-1].startswith(f"shopflow {verb}") and says in lines[-1], done.stderr
    if verb in ONE_LINE:
        assert len(lines) == 1, done.stderr


def test_a_senseless_value_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = shopflow("retrain", "--epochs", "0", tmp_path=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "shopflow retrain: error: --epochs must be at least 1 (got 0) (see `shopflow retrain --help`)"
    ]


def test_print_config_masks_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFLOW_PSEUDONYMIZATION_KEY", "k-7c1e-not-for-your-eyes")
    done = shopflow("loop", "--once", "--epochs", "2", "--print-config", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "k-7c1e-not-for-your-eyes" not in done.stdout + done.stderr
    assert '"pseudonymization_key": "**********"' in done.stdout and '"epochs": 2' in done.stdout
