"""`payouts <command> --help` for every command the parser has (found by walking it, so a new command is
checked without an edit here): what it does, the settings it uses by their variables, and every
option's default."""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.cli import _parser, main
from console.helptext import shows_default
from console.ops.cli import OPERATOR_VARIABLE, operator_of
from runtime.setting_names import all_variables, prefixes, variables
from tests.cli_helpers import clean_env, payouts

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {variable.name for variable in all_variables()}
_VARIABLE = re.compile(rf"\b(?:{'|'.join(prefixes())})[A-Z0-9_]*[A-Z0-9]\b")


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(_parser()))


def _flat(text: str) -> str:
    return " ".join(text.split())


def _help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _named(text: str) -> set[str]:
    return set(_VARIABLE.findall(text))


def test_the_walk_finds_every_command() -> None:
    top = {path[0] for path in COMMANDS if path}
    assert {"dev", "worker", "webhook", "migrate", "consumer", "ops", "schedules", "submit", "sandbox"} <= top
    assert ("ops", "retry") in COMMANDS and ("ops", "report") in COMMANDS


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda path: " ".join(path) or "payouts")
def test_help_says_what_the_command_does_what_it_reads_and_its_defaults(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = COMMANDS[path]
    text = _help(path, capsys, monkeypatch)
    flat = _flat(text)

    assert parser.description, "no description: --help would print a usage line and nothing else"
    assert _flat(parser.description) in flat
    named = _named(text)
    assert named, "names none of the settings it reads"
    assert named <= SETTINGS | {OPERATOR_VARIABLE}, f"names variables no setting has: {named - SETTINGS}"
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{action.option_strings[0]} has no description"
        if shows_default(action):
            assert f"(default: {action.default})" in flat, f"{action.option_strings[0]} does not show its default"


def _required_sections() -> dict[str, set[str]]:
    """The sections each command refuses to start without, as the code asks for them:
    `settings.require("payouts <command>", [section, ...])` anywhere in the rooms."""
    found: dict[str, set[str]] = {}
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] in {"tests", "bench", ".venv", ".data"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "require"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).startswith("payouts ") and isinstance(node.args[1], ast.List)):
                command = str(node.args[0].value).removeprefix("payouts ")
                found.setdefault(command, set()).update(ast.literal_eval(node.args[1]))
    return found


def test_a_command_names_every_variable_of_the_sections_it_requires(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    required = _required_sections()
    assert {"worker", "webhook", "consumer"} <= set(required)
    for command, sections in required.items():
        named = _named(_help((command,), capsys, monkeypatch))
        for section in sections:
            missing = {v.name for v in variables(section)} - named
            assert not missing, f"payouts {command} --help lacks {sorted(missing)} (it requires {section})"


def test_help_shows_the_defaults_of_the_code_not_the_environment(tmp_path: Path) -> None:
    env = clean_env(PORTMONE_VERSION="3", PORTMONE_PASSWORD="s3cret-from-env", WORKER_METRICS_PORT="9999")

    result = payouts("worker", "--help", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr  # invalid settings do not stop --help
    assert "WORKER_METRICS_PORT=9464" in result.stdout and "9999" not in result.stdout
    assert "PORTMONE_PASSWORD" in result.stdout and "s3cret-from-env" not in result.stdout


def test_a_setting_path_the_settings_lack_is_refused() -> None:
    assert [v.name for v in variables("ledger.url")] == ["LEDGER_URL"]
    for path in ("ledger.nope", "nope", "env.x"):
        with pytest.raises(KeyError):
            variables(path)


def test_the_operator_defaults_to_the_variable_the_help_names(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert f"${OPERATOR_VARIABLE}" in _help(("ops", "cancel"), capsys, monkeypatch)
    monkeypatch.setenv(OPERATOR_VARIABLE, "olena")
    args = _parser().parse_args(["ops", "cancel", "R-1", "--reason", "r"])
    assert operator_of(args.operator) == "olena"
    assert operator_of(_parser().parse_args(["ops", "cancel", "R-1", "--operator", "taras"]).operator) == "taras"
    monkeypatch.delenv(OPERATOR_VARIABLE)
    assert operator_of(args.operator) == ""
