"""jobs.loop: interval parsing, the run lock, step order and failure handling (pure logic;
the real jobs are exercised by the closed-loop integration test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.loop import LoopBusyError, LoopOptions, default_steps, parse_interval, run, run_iteration, run_lock
from shared.errors import ConfigError, TableNotFoundError, UsageError
from shared.settings import Settings


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("1h", 3600), ("2h30m", 9000)])
def test_parse_interval(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "0m", "-1m", "1d"])
def test_bad_intervals_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_interval(text)


def test_a_second_run_cannot_take_the_lock(tmp_path: Path):
    path = tmp_path / "loop.lock"
    with run_lock(path):
        with pytest.raises(LoopBusyError):
            with run_lock(path):
                pass
    with run_lock(path):  # released again
        pass


def _settings(tmp_path: Path) -> Settings:
    return Settings(stream={"run_dir": tmp_path / "run"}, metrics_dir=tmp_path / "metrics")


def test_steps_run_in_order_and_each_writes_metrics(tmp_path: Path):
    calls: list[str] = []

    def step(name):
        def fn(settings):
            calls.append(name)
            return {"rows": len(calls)}

        return name, fn

    result = run_iteration(_settings(tmp_path), [step("fold"), step("features"), step("retrain")])
    assert calls == ["fold", "features", "retrain"]
    assert result.ok and [s.status for s in result.steps] == ["succeeded"] * 3
    assert json.loads(Path(result.step("retrain").metrics_file).read_text())["detail"] == {"rows": 3}


def test_a_failed_step_stops_the_iteration(tmp_path: Path):
    def missing(settings):
        raise TableNotFoundError("silver/clicks does not exist: run shopflow clean first")

    calls = []
    result = run_iteration(_settings(tmp_path), [("fold", missing), ("features", lambda s: calls.append(1))])
    assert not result.ok and calls == []
    assert "silver/clicks" in result.steps[0].detail["error"]


def test_once_and_interval_are_exclusive(tmp_path: Path):
    with pytest.raises(UsageError, match="--once and --interval exclude each other"):
        run(_settings(tmp_path), LoopOptions(once=True, interval="1m"), steps=[])


def test_interval_runs_until_max_iterations(tmp_path: Path):
    calls = []
    results = run(
        _settings(tmp_path), LoopOptions(interval="1s", max_iterations=2), steps=[("fold", lambda s: calls.append(1))]
    )
    assert len(results) == 2 and len(calls) == 2


def test_maintenance_ends_an_iteration_only_when_due(tmp_path: Path):
    assert [name for name, _ in default_steps(LoopOptions())] == ["fold", "features", "retrain", "maintain"]
    assert [name for name, _ in default_steps(LoopOptions(skip_maintain=True))][-1] == "retrain"
    settings = Settings(
        stream={"run_dir": tmp_path / "run"},
        metrics_dir=tmp_path / "metrics",
        lake={"root": tmp_path / "lake"},
        models={"registry_root": tmp_path / "registry"},
        maintenance={"interval": "1h"},
    )
    maintain = dict(default_steps(LoopOptions()))["maintain"]
    assert maintain(settings).tables == []  # never ran: due
    assert "younger than 1h" in maintain(settings)["skipped"]
