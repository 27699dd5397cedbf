"""The batch jobs' options: declared once as dataclasses, parsed from argv, checked before
any Spark starts (pure logic: no session is created here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch import clean, features, ingest, pipeline
from shared.errors import ConfigError
from shared.options import parse_options
from shared.settings import Settings


def test_ingest_arguments_become_typed_options():
    got = parse_options(
        ingest.IngestOptions,
        [
            "--source",
            "reviews",
            "--source",
            "clicks_taobao",
            "--path",
            "x.csv",
            "--table",
            "t",
            "--sep",
            ";",
            "--no-header",
            "--multiline",
        ],
        prog="t",
    )
    assert got == ingest.IngestOptions(
        sources=("reviews", "clicks_taobao"), path=Path("x.csv"), table="t", sep=";", header=False, multiline=True
    )
    assert got.problem() is None
    assert parse_options(ingest.IngestOptions, ["--all"], prog="t") == ingest.IngestOptions(all=True)


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "say what to ingest"),
        (["--path", "x.csv"], "--path needs --table"),
        (["--source", "nope"], "invalid choice: 'nope'"),
        (["--all", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_ingest_refuses_what_names_nothing_to_ingest(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        ingest.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_ingest_run_checks_its_options_before_starting_spark():
    with pytest.raises(ConfigError, match="--path needs --table"):
        ingest.run(Settings(), ingest.IngestOptions(path=Path("x.csv")), spark=None)


@pytest.mark.parametrize(
    "module, options_cls, name",
    [
        (clean, clean.CleanOptions, "orders"),
        (features, features.FeaturesOptions, "train_propensity"),
    ],
)
def test_clean_and_features_choose_tables_by_name(module, options_cls, name, capsys):
    assert parse_options(options_cls, ["--table", name, "--force"], prog="t") == options_cls(tables=(name,), force=True)
    assert parse_options(options_cls, [], prog="t") == options_cls()  # all tables, no force
    with pytest.raises(SystemExit) as exc:
        module.main(["--table", "nope"])
    assert exc.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_pipeline_rejects_unknown_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        pipeline.main(["--bogus"])
    assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
