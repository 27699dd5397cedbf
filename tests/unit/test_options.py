"""shared.options: argparse derived from a job's options dataclass (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.options import option, parse_options


@dataclass(frozen=True)
class _Options:
    tables: tuple[str, ...] = option((), help="tables", choices=("a", "b"), flag="--table", repeat=True)
    force: bool = option(False, help="rebuild")
    limit: int | None = option(None, help="at most N")
    path: Path = option(Path("x"), help="a path")
    lr: float = option(1e-3, help="learning rate")
    internal: str = "set by calling jobs only"


def test_defaults_come_from_the_dataclass():
    assert parse_options(_Options, [], prog="t") == _Options()


def test_values_are_typed():
    got = parse_options(
        _Options, ["--table", "a", "--table", "b", "--force", "--limit", "3", "--path", "y", "--lr", "0.5"], prog="t"
    )
    assert got == _Options(tables=("a", "b"), force=True, limit=3, path=Path("y"), lr=0.5)


@pytest.mark.parametrize("argv", [["--bogus"], ["--table", "c"], ["--limit", "x"], ["--internal", "z"]])
def test_unknown_or_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_options(_Options, argv, prog="t")
    assert exc.value.code == 2
    assert "t: error:" in capsys.readouterr().err
