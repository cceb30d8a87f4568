"""Every command the console suggests is one the `payouts` parser accepts: the decision commands of
`ops show` (with the flags that reached the stack) and the escalation hints in the CLI's words."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from console.cli import _parser
from console.devstate import dev_flags
from console.ops.decide import UPDATE_NAMES, in_cli_words, suggested_commands
from payouts.escalation import operator_hint, reason_text
from payouts.models import EscalationReason
from tests.cli_helpers import parse_error

FLAGS = [[], dev_flags(Path(".data")), dev_flags(Path("/tmp/a dir/.data"))]
REASONS = [reason_text(kind, "30" if kind is EscalationReason.PERMANENT_ERROR else None) for kind in EscalationReason]


@pytest.mark.parametrize("flags", FLAGS, ids=["plain", "dev", "dev-data-dir"])
@pytest.mark.parametrize("confirm", [False, True])
def test_decision_commands_parse_and_reach_the_same_stack(flags: list[str], confirm: bool) -> None:
    commands = suggested_commands("payout-R-2", flags, confirm=confirm)

    assert [shlex.split(c)[2] for c in commands] == ["mark-paid", "retry", "cancel"]
    for command in commands:
        argv = shlex.split(command)
        assert parse_error(argv) is None, (command, parse_error(argv))
        args = _parser().parse_args(argv[1:])
        assert (args.payout, args.operator, args.reason) == ("payout-R-2", "NAME", "TEXT")
        assert args.dev == ("--dev" in flags)
        assert args.data_dir == (Path(flags[2]) if len(flags) > 2 else None)
        if args.ops_command != "mark-paid":
            assert args.confirm_no_bill_at_portmone is confirm


@pytest.mark.parametrize("reason", [*REASONS, None])
def test_escalation_hints_name_commands_that_parse(reason: str | None) -> None:
    hint = in_cli_words(operator_hint(reason), "payout-R-2", ["--dev"])

    assert "mark_paid" not in hint
    for span in re.findall(r"`([^`]+)`", hint):
        if span.startswith("payouts "):
            assert parse_error(shlex.split(span)) is None, span
        elif span in UPDATE_NAMES:  # a decision named on its own is an `ops` subcommand
            argv = ["payouts", "ops", span, "payout-R-2", "--operator", "o", "--reason", "r", "--reference", "x"]
            if span != "mark-paid":
                argv = argv[:-2]
            assert parse_error(argv) is None, span


DOCS = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc", ["README.md", "docs/runbook.md", "docs/development.md"])
def test_every_payouts_command_in_the_docs_code_blocks_parses(doc: str) -> None:
    text = (DOCS / doc).read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0].endswith("payouts"):
                commands.append(["payouts", *words[1:]])
    if doc == "README.md":
        assert ["payouts", "dev", "--demo", "20"] in commands
    for argv in commands:
        assert parse_error(argv) is None, (doc, argv, parse_error(argv))
