"""The shopflow CLI dispatches to each job's main(argv) without starting anything."""

from __future__ import annotations

import importlib

from shared import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_every_command_module_has_a_main():
    for module, _ in cli.COMMANDS.values():
        assert callable(importlib.import_module(module).main), module
