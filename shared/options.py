"""Job arguments declared once: a frozen dataclass per job, argparse derived from it, and
the job's configuration resolved in one place (settings <- environment <- command line).

Each field's default is the one default; its `help` (and optional `choices`, `flag`,
`repeat`) live in the field's metadata, and so do the two things resolution needs:
`setting="loop.epochs"` (an option left unset takes that setting's value, itself the
environment's `SHOPFLOW_LOOP__EPOCHS` or the settings' default) and the bounds a value
must keep (`ge`, `gt`, `le`, `lt`, `check`). `start_job` parses argv (unknown arguments
exit 2 with one line naming them), reads the settings once, resolves the options and
refuses a value that makes no sense with one line and exit 2; `--print-config` prints the
resolved options and the settings as JSON, secrets masked, and exits 0 without running
the job. A job's `run(settings, options)` calls `resolve` too (it returns resolved options
as they are), so another job can build options in code without going through argv.

    @dataclass(frozen=True)
    class RetrainOptions:
        epochs: int | None = option(None, help="fine-tuning epochs", setting="loop.epochs", ge=1)
        force: bool = option(False, help="rebuild even if the inputs did not change")

    options, settings = start_job(RetrainOptions, argv, prog="shopflow retrain", doc=__doc__)

A field made with `options_group(OtherOptions, title=...)` holds another job's options:
their flags join this job's command line, so a job that runs another passes them on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import operator
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from shared.errors import ShopflowError, UsageError

T = TypeVar("T")

if typing.TYPE_CHECKING:
    from shared.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "**********"  # what a secret prints as (pydantic's SecretStr does the same)
_BOUNDS = {"ge": ("at least", operator.ge), "gt": ("above", operator.gt), "le": ("at most", operator.le)}
_BOUNDS["lt"] = ("below", operator.lt)


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[Any] | None = None,
    flag: str | None = None,
    repeat: bool = False,
    positional: bool = False,
    setting: str | None = None,
    unless: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    check: Callable[[Any], object] | None = None,
) -> Any:
    """A dataclass field with what argparse needs to expose it and what `resolve` needs.

    setting: dotted path into Settings whose value an unset (None) option takes.
    unless: a bool field that, when true, leaves this option unset and refuses it given.
    ge/gt/le/lt: bounds of a number; check: raises ValueError/ShopflowError on a bad value.
    """
    meta = {
        "help": help,
        "choices": choices,
        "flag": flag,
        "repeat": repeat,
        "positional": positional,
        "setting": setting,
        "unless": unless,
        "bounds": {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None},
        "check": check,
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) default for repeated options")
    if setting is not None and default is not None:
        raise TypeError("an option backed by a setting defaults to None (unset: the setting's value)")
    return dataclasses.field(default=default, metadata=meta)


def options_group(options_cls: type, *, title: str) -> Any:
    """A field holding another job's options; their flags join this job's command line."""
    return dataclasses.field(default_factory=options_cls, metadata={"group": options_cls, "title": title})


def setting_env_name(path: str) -> str:
    """'loop.epochs' -> 'SHOPFLOW_LOOP__EPOCHS' (see shared.settings)."""
    return "SHOPFLOW_" + path.upper().replace(".", "__")


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


def _flag(field: dataclasses.Field) -> str:
    if field.metadata.get("positional"):
        return field.name
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _add_arguments(parser: Any, options_cls: type, prefix: str = "") -> None:
    hints = typing.get_type_hints(options_cls)
    for field in dataclasses.fields(options_cls):
        meta = field.metadata
        if "group" in meta:
            group = parser.add_argument_group(meta["title"])
            _add_arguments(group, meta["group"], prefix=f"{prefix}{field.name}.")
            continue
        if "help" not in meta:
            continue  # not a command-line option (set by calling jobs only)
        kind = _scalar_type(hints[field.name])
        has_default = field.default is not dataclasses.MISSING
        dest = prefix + field.name
        help_ = meta["help"]
        if meta.get("setting"):
            help_ = f"{help_} (default: {setting_env_name(meta['setting'])}, see --print-config)"
        elif has_default and field.default not in (None, (), False):
            help_ = f"{help_} (default: {field.default})"
        if meta.get("positional"):
            if prefix:
                raise TypeError(f"{options_cls.__name__}.{field.name}: a grouped option cannot be positional")
            parser.add_argument(
                field.name,
                type=kind,
                choices=meta.get("choices"),
                help=help_,
                **({"nargs": "?", "default": field.default} if has_default else {}),
            )
            continue
        flag = _flag(field)
        if kind is bool:
            # BooleanOptionalAction's default is None unless given: absent must mean the field's.
            parser.add_argument(
                flag,
                dest=dest,
                action=argparse.BooleanOptionalAction if field.default is True else "store_true",
                default=field.default,
                help=help_,
            )
        elif meta.get("repeat"):
            parser.add_argument(flag, dest=dest, type=kind, action="append", choices=meta.get("choices"), help=help_)
        else:
            parser.add_argument(
                flag,
                dest=dest,
                type=kind,
                choices=meta.get("choices"),
                required=not has_default,
                help=help_,
                default=field.default if has_default else None,
            )


def build_parser(options_cls: type, *, prog: str, description: str = "") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description)
    _add_arguments(parser, options_cls)
    return parser


def _from_namespace(options_cls: type[T], namespace: Mapping[str, Any], prefix: str = "") -> T:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(options_cls):  # type: ignore[arg-type]
        if "group" in field.metadata:
            values[field.name] = _from_namespace(field.metadata["group"], namespace, prefix=f"{prefix}{field.name}.")
            continue
        if prefix + field.name not in namespace:
            continue
        value = namespace[prefix + field.name]
        if field.metadata.get("repeat"):
            value = tuple(value) if value else field.default
        values[field.name] = value
    return options_cls(**values)


def parse_options(options_cls: type[T], argv: Sequence[str] | None, *, prog: str, description: str = "") -> T:
    """argv -> an instance of `options_cls`, as given (not resolved against settings);
    unknown or malformed arguments exit 2 (argparse)."""
    parser = build_parser(options_cls, prog=prog, description=description)
    return _from_namespace(options_cls, vars(parser.parse_args(list(argv) if argv is not None else None)))


def _setting(settings: Settings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _check(field: dataclasses.Field, value: Any, source: str) -> None:
    """Refuse `value` for `field` with a UsageError saying what is wrong and where it came from."""
    if value is None:
        return
    meta = field.metadata
    where = f" from {source}" if source else ""
    choices = meta.get("choices")
    for item in value if isinstance(value, tuple) else (value,):
        if choices is not None and item not in choices:
            raise UsageError(
                f"{_flag(field)}: invalid choice {item!r}{where} (choose from {', '.join(map(str, choices))})"
            )
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{_flag(field)} must be a finite number (got {value}{where})")
    for name, bound in meta.get("bounds", {}).items():
        words, holds = _BOUNDS[name]
        if not holds(float(value), float(bound)):
            raise UsageError(f"{_flag(field)} must be {words} {bound} (got {value}{where})")
    if meta.get("check") is not None:
        try:
            meta["check"](value)
        except (ValueError, ShopflowError) as exc:
            raise UsageError(f"{_flag(field)}: {exc}{where}") from exc


def resolve(options: T, settings: Settings) -> T:
    """The job's configuration, resolved once: each option left unset that names a
    `setting` takes the settings' value (the environment's, else the default); every
    value is checked against the bounds declared with its option. Two optional methods of
    the options class take part: `derived()` gives defaults that depend on other options
    (name -> value, applied to options still unset), `problem()` says what no single
    option shows (a message, or None). Resolved options
    come back equal, so a job's `run` resolves what its caller built. A value that makes
    no sense raises UsageError, one line naming the option and the value."""
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(options):  # type: ignore[arg-type]
        meta = field.metadata
        value = getattr(options, field.name)
        if "group" in meta:
            changes[field.name] = resolve(value, settings)
            continue
        if "help" not in meta:
            continue
        unless = meta.get("unless")
        if unless and getattr(options, unless):
            if value is not None:
                other = next(f for f in dataclasses.fields(options) if f.name == unless)  # type: ignore[arg-type]
                raise UsageError(f"{_flag(other)} and {_flag(field)} exclude each other: say one")
            continue
        source = ""
        if value is None and meta.get("setting"):
            value = changes[field.name] = _setting(settings, meta["setting"])
            source = setting_env_name(meta["setting"])
        _check(field, value, source)
    resolved = dataclasses.replace(options, **changes) if changes else options  # type: ignore[type-var]
    derived = getattr(resolved, "derived", None)
    if callable(derived):  # defaults that depend on other options (e.g. the task's epochs)
        by_name = {f.name: f for f in dataclasses.fields(resolved)}  # type: ignore[arg-type]
        fill = {name: value for name, value in derived().items() if getattr(resolved, name) is None}
        for name, value in fill.items():
            _check(by_name[name], value, "")
        resolved = dataclasses.replace(resolved, **fill) if fill else resolved  # type: ignore[type-var]
    problem = getattr(resolved, "problem", None)
    if callable(problem) and (message := problem()):
        raise UsageError(message)
    return resolved


def _json_default(value: Any) -> Any:
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    return repr(value)


def config_document(prog: str, options: Any, settings: Settings) -> dict[str, Any]:
    """What `--print-config` prints: the command, its resolved options and the settings it
    runs with; secrets print as MASK (pydantic masks SecretStr in JSON mode)."""
    return {
        "command": prog,
        "options": json.loads(json.dumps(dataclasses.asdict(options), default=_json_default)),
        "settings": settings.model_dump(mode="json"),
    }


def start_job(
    options_cls: type[T], argv: Sequence[str] | None, *, prog: str, doc: str | None, configure_logging: bool = True
) -> tuple[T, Settings]:
    """What every job's `main` does first: its options from `argv`, the settings read once,
    the options resolved against them (a bad or senseless value exits 2 with one line),
    and logging at the configured level. With `--print-config` it prints the resolved
    configuration as JSON and exits 0 instead. `doc` is the job module's docstring; its
    first line describes the command in --help."""
    parser = build_parser(options_cls, prog=prog, description=(doc or "").strip().split("\n")[0])
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved options and settings as JSON (secrets masked) and exit without running",
    )
    namespace = vars(parser.parse_args(list(argv) if argv is not None else None))
    print_config = namespace.pop("print_config")
    from shared.settings import get_settings

    settings = get_settings()
    try:
        options = resolve(_from_namespace(options_cls, namespace), settings)
    except UsageError as exc:
        parser.error(" ".join(str(exc).split()))
    if print_config:
        print(json.dumps(config_document(prog, options, settings), indent=2))
        sys.stdout.flush()
        raise SystemExit(0)
    if configure_logging:  # False: the job sets logging up itself (the Faust worker)
        logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    return options, settings
