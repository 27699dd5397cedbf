"""Each job's configuration, resolved once (settings <- environment <- command line):
precedence, refused values, --print-config with secrets masked, the loop's interval from
settings and its command line reaching the retrain step (pure logic, no services)."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import pytest

from jobs import loop, retrain
from jobs.cli import COMMANDS
from shared.errors import ConfigError
from shared.options import MASK, resolve, start_job
from shared.settings import Settings, get_settings

SECRET = "a-real-pseudonymization-key-7f3c9e"


@pytest.fixture
def fresh_settings(monkeypatch, tmp_path: Path):
    """get_settings() re-read from the environment this test sets, and forgotten after."""
    monkeypatch.setenv("SHOPFLOW_STREAM__RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("SHOPFLOW_METRICS_DIR", str(tmp_path / "metrics"))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_precedence_settings_then_environment_then_command_line(fresh_settings):
    options, _ = start_job(retrain.RetrainOptions, [], prog="t", doc=None)
    assert (options.epochs, options.margin, options.task) == (1, 0.0, "propensity")  # the settings' defaults

    fresh_settings.setenv("SHOPFLOW_LOOP__EPOCHS", "3")
    fresh_settings.setenv("SHOPFLOW_LOOP__PROMOTION_MARGIN", "0.01")
    get_settings.cache_clear()
    options, _ = start_job(retrain.RetrainOptions, [], prog="t", doc=None)
    assert (options.epochs, options.margin) == (3, 0.01)  # the environment over the defaults

    get_settings.cache_clear()
    options, _ = start_job(retrain.RetrainOptions, ["--epochs", "5", "--margin", "0"], prog="t", doc=None)
    assert (options.epochs, options.margin) == (5, 0.0)  # the command line over both, 0 included


def test_resolved_options_resolve_to_themselves(tmp_path: Path):
    settings = Settings(loop={"epochs": 2})
    once = resolve(loop.LoopOptions(), settings)
    assert once.retrain.epochs == 2 and resolve(once, settings) == once


@pytest.mark.parametrize(
    "argv,says",
    [
        (["--epochs", "0"], "--epochs must be at least 1 (got 0)"),
        (["--resamples", "-5"], "--resamples must be at least 1 (got -5)"),
        (["--max-train-samples", "0"], "--max-train-samples must be at least 1 (got 0)"),
        (["--margin", "nan"], "--margin must be a finite number"),
        (["--margin", "a-lot"], "invalid float value: 'a-lot'"),
        (["--confidence", "1"], "--confidence must be below 1"),
        (["--lr", "0"], "--lr must be above 0"),
        (["--task", "nope"], "invalid choice: 'nope'"),
    ],
)
def test_a_value_that_makes_no_sense_is_one_line_and_exit_2(argv, says, fresh_settings, capsys):
    with pytest.raises(SystemExit) as exc:
        retrain.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_a_setting_that_makes_no_sense_is_refused_too(fresh_settings, capsys):
    fresh_settings.setenv("SHOPFLOW_LOOP__INTERVAL", "every now and then")
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exc:
        loop.main([])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "SHOPFLOW_LOOP__INTERVAL" in err and len(err.strip().splitlines()) == 1


def test_an_out_of_range_environment_value_is_a_config_error(fresh_settings):
    fresh_settings.setenv("SHOPFLOW_LOOP__EPOCHS", "0")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="epochs"):
        get_settings()


# Each verb run by start_job, with the arguments it cannot do without.
PRINTABLE = {
    "pipeline": [],
    "ingest": ["--all"],
    "clean": [],
    "features": [],
    "train": ["--task", "propensity"],
    "models": ["list"],
    "score": ["--task", "propensity"],
    "broker": ["status"],
    "replay": [],
    "worker": [],
    "fold": [],
    "retrain": [],
    "loop": [],
    "privacy": ["migrate"],
    "runs": [],
    "maintain": [],
}


def test_every_verb_that_runs_a_job_prints_its_config():
    assert set(PRINTABLE) == set(COMMANDS) - {"demo"}  # the demo sets its own environment up


@pytest.mark.parametrize("verb", list(PRINTABLE))
def test_print_config_masks_secrets_and_runs_nothing(verb, fresh_settings, capsys):
    fresh_settings.setenv("SHOPFLOW_PSEUDONYMIZATION_KEY", SECRET)
    get_settings.cache_clear()
    module = importlib.import_module(COMMANDS[verb][0])
    with pytest.raises(SystemExit) as exc:
        module.main([*PRINTABLE[verb], "--print-config"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert SECRET not in out
    doc = json.loads(out)
    assert doc["settings"]["pseudonymization_key"] == MASK
    assert doc["settings"]["loop"]["interval"] == "15m" and "options" in doc


def test_retrain_prints_its_resolved_options(fresh_settings, capsys):
    fresh_settings.setenv("SHOPFLOW_LOOP__BOOTSTRAP_RESAMPLES", "250")
    get_settings.cache_clear()
    with pytest.raises(SystemExit):
        retrain.main(["--epochs", "2", "--print-config"])
    options = json.loads(capsys.readouterr().out)["options"]
    assert options["epochs"] == 2 and options["resamples"] == 250 and options["task"] == "propensity"


def test_loop_without_a_flag_runs_every_settings_interval(tmp_path: Path):
    settings = Settings(loop={"interval": "1s"}, stream={"run_dir": tmp_path / "run"}, metrics_dir=tmp_path / "m")
    started: list[float] = []
    results = loop.run(
        settings, loop.LoopOptions(max_iterations=2), steps=[("fold", lambda s: started.append(time.monotonic()))]
    )
    assert len(results) == 2 and all(r.ok for r in results)
    assert started[1] - started[0] >= 0.9  # one settings interval apart


def test_loop_prints_the_settings_interval_when_no_flag_is_given(fresh_settings, capsys):
    fresh_settings.setenv("SHOPFLOW_LOOP__INTERVAL", "5m")
    get_settings.cache_clear()
    with pytest.raises(SystemExit):
        loop.main(["--print-config"])
    options = json.loads(capsys.readouterr().out)["options"]
    assert options["interval"] == "5m" and options["once"] is False


def test_once_means_no_interval(fresh_settings):
    options, _ = start_job(loop.LoopOptions, ["--once"], prog="t", doc=None)
    assert options.once and options.interval is None


def test_the_loops_command_line_reaches_retrain(fresh_settings, monkeypatch):
    options, settings = start_job(
        loop.LoopOptions, ["--once", "--epochs", "2", "--max-train-samples", "500", "--no-promote"], prog="t", doc=None
    )
    assert options.retrain == resolve(retrain.RetrainOptions(epochs=2, max_train_samples=500, promote=False), settings)
    received = []
    monkeypatch.setattr(retrain, "run", lambda settings, options: received.append(options))
    steps = dict(loop.default_steps(options))
    steps["retrain"](settings)
    assert received == [options.retrain] and received[0].epochs == 2 and received[0].max_train_samples == 500


def test_loop_refuses_a_bad_retrain_option_before_running(fresh_settings, capsys):
    with pytest.raises(SystemExit) as exc:
        loop.main(["--once", "--epochs", "0"])
    assert exc.value.code == 2 and "--epochs must be at least 1" in capsys.readouterr().err


def test_loop_variables_keep_working(fresh_settings):
    for name, value in {
        "TASK": "sentiment",
        "INTERVAL": "2h30m",
        "PROMOTION_MARGIN": "0.02",
        "BOOTSTRAP_RESAMPLES": "300",
        "CONFIDENCE": "0.9",
        "MIN_EVAL_ROWS": "50",
        "EPOCHS": "4",
        "SEED": "7",
    }.items():
        fresh_settings.setenv(f"SHOPFLOW_LOOP__{name}", value)
    get_settings.cache_clear()
    options, settings = start_job(loop.LoopOptions, [], prog="t", doc=None)
    assert options.interval == "2h30m"
    r = options.retrain
    assert (r.task, r.margin, r.resamples, r.confidence, r.min_eval_rows, r.epochs, r.seed) == (
        "sentiment",
        0.02,
        300,
        0.9,
        50,
        4,
        7,
    )
    assert settings.stream.model_task == "sentiment"  # the loop's task is the one served


def test_served_task_is_one_setting():
    assert Settings(stream={"model_task": "sentiment"}).loop.task == "sentiment"
    assert Settings(loop={"task": "sentiment"}).stream.model_task == "sentiment"
    assert Settings(loop={"task": "sentiment"}, stream={"model_task": "sentiment"}).loop.task == "sentiment"


def test_a_loop_task_that_disagrees_with_the_served_task_is_refused(fresh_settings):
    fresh_settings.setenv("SHOPFLOW_LOOP__TASK", "sentiment")
    fresh_settings.setenv("SHOPFLOW_STREAM__MODEL_TASK", "propensity")
    get_settings.cache_clear()
    with pytest.raises(ConfigError) as exc:
        get_settings()
    assert "SHOPFLOW_LOOP__TASK=sentiment and SHOPFLOW_STREAM__MODEL_TASK=propensity disagree" in str(exc.value)


def test_train_resolves_the_tasks_defaults_and_the_settings_device(fresh_settings):
    fresh_settings.setenv("SHOPFLOW_MODELS__DEVICE", "cpu")
    get_settings.cache_clear()
    from batch.train import TrainOptions

    options, _ = start_job(TrainOptions, ["--task", "propensity", "--batch-size", "8"], prog="t", doc=None)
    assert (options.epochs, options.batch_size, options.lr, options.device) == (2, 8, 5e-4, "cpu")
