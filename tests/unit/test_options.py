"""shared.options: argparse derived from a job's options dataclass (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.errors import UsageError
from shared.options import option, options_group, parse_options, resolve
from shared.settings import Settings


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


def _short(text: str) -> None:
    if len(text) > 3:
        raise ValueError(f"{text!r} is longer than 3")


@dataclass(frozen=True)
class _Inner:
    epochs: int | None = option(None, help="epochs", setting="loop.epochs", ge=1)


@dataclass(frozen=True)
class _Outer:
    once: bool = option(False, help="once")
    interval: str | None = option(None, help="every", setting="loop.interval", unless="once", check=_short)
    rate: float = option(0.5, help="a rate", gt=0, le=1)
    inner: _Inner = options_group(_Inner, title="inner")

    def problem(self) -> str | None:
        return "rate 1 needs --once" if self.rate == 1 and not self.once else None


def test_unset_options_take_their_settings_and_grouped_flags_parse():
    settings = Settings(loop={"epochs": 4, "interval": "5m"})
    assert resolve(_Outer(), settings) == _Outer(interval="5m", inner=_Inner(epochs=4))
    given = parse_options(_Outer, ["--epochs", "2", "--once"], prog="t")
    assert resolve(given, settings) == _Outer(once=True, inner=_Inner(epochs=2))


@pytest.mark.parametrize(
    "options,says",
    [
        (_Outer(rate=0.0), "--rate must be above 0 (got 0.0)"),
        (_Outer(rate=1.5), "--rate must be at most 1 (got 1.5)"),
        (_Outer(rate=float("inf")), "--rate must be a finite number"),
        (_Outer(inner=_Inner(epochs=0)), "--epochs must be at least 1 (got 0)"),
        (_Outer(once=True, interval="1m"), "--once and --interval exclude each other"),
        (_Outer(interval="toolong"), "--interval: 'toolong' is longer than 3"),
        (_Outer(rate=1.0), "rate 1 needs --once"),
    ],
)
def test_declared_bounds_and_problems_are_refused(options, says):
    with pytest.raises(UsageError) as exc:
        resolve(options, Settings())
    assert says in str(exc.value)


def test_a_bad_setting_names_its_variable():
    with pytest.raises(UsageError, match="SHOPFLOW_LOOP__EPOCHS"):
        resolve(_Inner(), Settings.model_construct(loop=Settings().loop.model_copy(update={"epochs": 0})))
