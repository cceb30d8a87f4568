"""What `payouts <command> --help` says: what the command starts or does, the settings it uses (named
from `runtime.settings` by `runtime.setting_names`, with their defaults), and every option's default."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import Any

from runtime.setting_names import Variable, variables

_CONTINUED = "      "  # a long line of an indented block goes on this much further in


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help, with each option's default after its help text (`shows_default`), and a
    description or epilog that keeps its shape: paragraphs (separated by a blank line) are filled, and
    each line of an indented paragraph stays a line."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return super()._get_help_string(action) if shows_default(action) else action.help

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        options: dict[str, Any] = {"width": width, "break_long_words": False, "break_on_hyphens": False}
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            if paragraph.startswith(" "):
                lines = paragraph.splitlines()
                paragraphs.append("\n".join(
                    textwrap.fill(line, initial_indent=indent, subsequent_indent=indent + _CONTINUED, **options)
                    for line in lines
                ))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), initial_indent=indent,
                                                subsequent_indent=indent, **options))
        return "\n\n".join(paragraphs)


def shows_default(action: argparse.Action) -> bool:
    """Whether an option's help ends with its default: not a flag's (False), and not a default that
    shows nothing (None, an empty string or list), where the help says what happens without the option."""
    default = action.default
    return not (default is None or isinstance(default, bool) or default in ("", []))


def settings_used(paths: Sequence[str], note: str = "") -> str:
    """An epilog naming the settings a command uses (paths of `runtime.setting_names`: `temporal`,
    `ledger.url`, `env`), one line per section, each variable with its default."""
    sections: dict[str, list[Variable]] = {}
    for path in paths:
        sections.setdefault(path.partition(".")[0], []).extend(variables(path))
    lines = [f"  {', '.join(map(str, found))}" for found in sections.values()]
    return (
        "settings it uses (environment or .env; NAME=default; each one in docs/configuration.md"
        f"{'; ' + note if note else ''}):\n\n" + "\n".join(lines)
    )


def command(
    sub: Any, name: str, summary: str, description: str, *, uses: Sequence[str] = (), note: str = "",
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand of `sub` whose --help says what it does and the settings it uses: those of `uses`
    (`settings_used`), or what `epilog` says of them."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=settings_used(uses, note) if uses else epilog,
        formatter_class=HelpFormatter,
    )
    return parser
