"""Job arguments declared once: a frozen dataclass per job, argparse derived from it.

Each field's default is the one default; its `help` (and optional `choices`, `flag`,
`repeat`) live in the field's metadata. `parse_options` builds the parser, rejects
unknown arguments (argparse exits 2 with one line naming them) and returns the
dataclass, so `main(argv)` stays one line and another job can build the same options
in code without going through argv.

    @dataclass(frozen=True)
    class CleanOptions:
        tables: tuple[str, ...] = option((), help="default: all", choices=("orders",), flag="--table", repeat=True)
        force: bool = option(False, help="rebuild even if the inputs did not change")

    options = parse_options(CleanOptions, argv, prog="shopflow clean", description="...")
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

if typing.TYPE_CHECKING:
    from shared.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[Any] | None = None,
    flag: str | None = None,
    repeat: bool = False,
    positional: bool = False,
) -> Any:
    """A dataclass field with what argparse needs to expose it."""
    meta = {"help": help, "choices": choices, "flag": flag, "repeat": repeat, "positional": positional}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) default for repeated options")
    return dataclasses.field(default=default, metadata=meta)


def _scalar_type(annotation: Any) -> Any:
    """int | None -> int, tuple[str, ...] -> str, Path -> Path."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar_type(args[0])
    if origin is tuple:
        return _scalar_type(typing.get_args(annotation)[0])
    return annotation


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # One line naming the problem and where help is, not the whole usage block.
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(options_cls: type, *, prog: str, description: str = "") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description)
    hints = typing.get_type_hints(options_cls)
    for field in dataclasses.fields(options_cls):
        meta = field.metadata
        if "help" not in meta:
            continue  # not a command-line option (set by calling jobs only)
        kind = _scalar_type(hints[field.name])
        has_default = field.default is not dataclasses.MISSING
        help_ = meta["help"]
        if has_default and field.default not in (None, (), False):
            help_ = f"{help_} (default: {field.default})"
        if meta.get("positional"):
            parser.add_argument(
                field.name,
                type=kind,
                choices=meta.get("choices"),
                help=help_,
                **({"nargs": "?", "default": field.default} if has_default else {}),
            )
            continue
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        if kind is bool:
            # BooleanOptionalAction's default is None unless given: absent must mean the field's.
            parser.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction if field.default is True else "store_true",
                default=field.default,
                help=help_,
            )
        elif meta.get("repeat"):
            parser.add_argument(
                flag, dest=field.name, type=kind, action="append", choices=meta.get("choices"), help=help_
            )
        else:
            parser.add_argument(
                flag,
                dest=field.name,
                type=kind,
                choices=meta.get("choices"),
                required=not has_default,
                help=help_,
                default=field.default if has_default else None,
            )
    return parser


def parse_options(options_cls: type[T], argv: Sequence[str] | None, *, prog: str, description: str = "") -> T:
    """argv -> an instance of `options_cls`; unknown or bad arguments exit 2 (argparse)."""
    parser = build_parser(options_cls, prog=prog, description=description)
    namespace = vars(parser.parse_args(list(argv) if argv is not None else None))
    values: dict[str, Any] = {}
    for field in dataclasses.fields(options_cls):
        if field.name not in namespace:
            continue
        value = namespace[field.name]
        if field.metadata.get("repeat"):
            value = tuple(value) if value else field.default
        values[field.name] = value
    return options_cls(**values)


def start_job(options_cls: type[T], argv: Sequence[str] | None, *, prog: str, doc: str | None) -> tuple[T, Settings]:
    """What every job's `main` does first: its options from `argv` (bad ones exit 2), the
    settings read once, and logging at the configured level. `doc` is the job module's
    docstring; its first line describes the command in --help."""
    options = parse_options(options_cls, argv, prog=prog, description=(doc or "").strip().split("\n")[0])
    from shared.settings import get_settings

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    return options, settings
