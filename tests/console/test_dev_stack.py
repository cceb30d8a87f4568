"""`payouts dev` tried as a newcomer would, in a second terminal: before any payout every series an alert
or dashboard reads is at 0; it records what it started, so
`--dev` commands find it on any port; `payouts dev --demo N` submits to the running stack; an empty
manual queue says what is still awaiting its callback; the README's codec example decodes; a killed
`payouts dev` leaves no Temporal server behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from aiohttp import web
from pydantic import SecretStr

from console.tools import temporal_cli
from runtime.settings import Settings, WebhookSettings
from tests.cli_helpers import clean_env, parse_error, payouts, suggested_commands
from tests.console.conftest import DevProcess, start_dev, stop, wait_ready
from tests.metrics import Exposition
from tests.stack import TEST_PHONE, free_port, stack_crypto
from webhook.codec_server import setup_codec_server

pytestmark = pytest.mark.integration

SECRETS = ("dev-intake-token", "dev-password", "dev-only", "PAYOUTS_")


def in_dev(dev: DevProcess, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """A `payouts` command from a second terminal, pointed at the stack by its data dir only."""
    return payouts(*args, env=clean_env(**env), cwd=cwd or dev.cwd, timeout=180)


def assert_every_suggestion_parses(text: str) -> None:
    commands = suggested_commands(text)
    assert commands, text
    for argv in commands:
        assert parse_error(argv) is None, (argv, parse_error(argv))


# What no series need be at 0: histograms (no observation, no series), gauges read from the ledger or
# written by a report (they appear with their first reading), and the Temporal SDK's (Core's own).
_NOT_BORN = re.compile(
    r"_(bucket|count|sum)$|^temporal_|^payout_(manual_review_(queue|oldest)|reconciliation_|outbox_)"
)
_SELECTOR = re.compile(r"\b((?:payout|portmone|webhook)_[a-z0-9_]+)\b(\{[^}]*\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _selectors() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Every series selector of ours in the alert rules and the payouts dashboard: (name, matchers)."""
    root = Path(__file__).resolve().parents[2]
    exprs = [rule["expr"] for group in yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())["groups"]
             for rule in group["rules"] if "alert" in rule]
    dashboard = json.loads((root / "deploy/grafana/receipt-payouts.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    return [(name, _MATCHER.findall(matchers or "")) for expr in exprs for name, matchers in _SELECTOR.findall(expr)]


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    checks = {"=": lambda v, w: v == w, "!=": lambda v, w: v != w,
              "=~": lambda v, w: re.fullmatch(w, v) is not None, "!~": lambda v, w: re.fullmatch(w, v) is None}
    return all(checks[op](labels.get(label, ""), value) for label, op, value in matchers)


def test_before_any_payout_every_series_an_alert_or_dashboard_reads_is_at_0(dev: DevProcess) -> None:
    """Right after `payouts dev` starts (this module's first test): each counter series that an alert or the
    payouts dashboard selects is on /metrics at 0, on the webhook's internal listener and the workers'."""
    consuming = "consuming receipt.accepted" in dev.output()
    for url in (dev.internal_url, f"http://127.0.0.1:{dev.ports['metrics']}"):
        scraped = Exposition.parse(httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text)
        checked = 0
        for name, matchers in _selectors():
            if _NOT_BORN.search(name) or (name.startswith("payout_queue_") and not consuming):
                continue
            found = [v for labels, v in scraped.samples.get(name, []) if _matches(labels, matchers)]
            assert found, f"{url}: no {name}{matchers} before the first payout"
            assert set(found) == {0.0}, (name, matchers, found)
            checked += 1
        assert checked >= 20, checked


def test_the_state_file_says_where_the_stack_runs_and_ops_dev_finds_it(dev: DevProcess, tmp_path: Path) -> None:
    state = dev.state()
    assert state["pid"] == dev.proc.pid
    assert state["temporal_address"] == f"127.0.0.1:{dev.ports['temporal']}"
    assert state["webhook_url"] == dev.webhook_url
    assert state["internal_url"] == dev.internal_url
    assert state["codec_endpoint"] == f"{dev.internal_url}/codec"
    assert state["ui_url"] == f"http://127.0.0.1:{dev.ports['ui']}"
    assert state["callback_timeout_seconds"] == 60
    raw = (dev.data_dir / "dev-stack.json").read_text()
    assert not [s for s in SECRETS if s in raw]

    # From another directory: the data dir alone leads to the stack on its non-default ports.
    listed = in_dev(dev, "ops", "list", "--dev", "--data-dir", str(dev.data_dir), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "in manual review" in listed.stdout
    assert "note:" not in listed.stderr
    assert_every_suggestion_parses(dev.output())  # the banner's `payouts ops list --dev --data-dir …`


def test_demo_submits_to_the_running_stack_and_prints_the_whole_table(dev: DevProcess, tmp_path: Path) -> None:
    # The README's "Try it": the first `payouts dev` still holds the ports (found by its data dir) …
    same_dir = in_dev(dev, "dev", "--data-dir", str(dev.data_dir), "--demo", "2")
    # … or by the ports alone, from a directory of its own.
    same_ports = in_dev(dev, "dev", "--data-dir", str(tmp_path / ".data"), *dev.port_flags, "--demo", "1",
                        cwd=tmp_path)

    for run, count, log in ((same_dir, 2, dev.data_dir / "dev.log"), (same_ports, 1, tmp_path / ".data" / "dev.log")):
        assert run.returncode == 0, run.stdout + run.stderr
        owner = f"pid {dev.proc.pid}, " if run is same_dir else ""
        assert (f"a stack is already running ({owner}webhook {dev.internal_url}, "
                f"Temporal 127.0.0.1:{dev.ports['temporal']}): the demo submits to it") in run.stdout
        assert f"the log goes to {log} while it runs" in run.stdout
        rows = [line.split() for line in run.stdout.splitlines() if line.startswith("payout-demo-")]
        assert len(rows) == count
        for row in rows:  # not a terminal: every cell whole, no ellipsis
            assert re.fullmatch(r"payout-demo-\d{6}-\d{3}", row[0])
            assert row[1:] == ["25.00", "UAH", row[3], row[4], "PAID"] and row[3].startswith("+380•••••")
        assert "…" not in run.stdout
        assert f"totals: PAID={count}" in run.stdout
    assert dev.state()["pid"] == dev.proc.pid and dev.proc.poll() is None

    again = in_dev(dev, "dev", "--data-dir", str(dev.data_dir))
    assert again.returncode == 2
    assert f"error: a payouts dev stack is already running (pid {dev.proc.pid}" in again.stderr
    assert_every_suggestion_parses(again.stderr)


def test_an_empty_queue_counts_the_payouts_awaiting_their_callback(dev: DevProcess) -> None:
    sandbox = f"http://127.0.0.1:{dev.ports['sandbox']}"
    dropped = httpx.post(f"{sandbox}/_sandbox/faults", json={"drop_callback": True, "callback_status": "CREATED"})
    dropped.raise_for_status()
    try:
        submitted = in_dev(dev, "submit", "--dev", "--data-dir", str(dev.data_dir), "--receipt-id", "NEWCOMER-1",
                           "--telegram-id", "42", "--msisdn", TEST_PHONE, "--amount-kopecks", "2500")
        assert submitted.returncode == 0, submitted.stderr
        assert '"workflow_id": "payout-NEWCOMER-1"' in submitted.stdout

        deadline = time.monotonic() + 30
        while True:
            listed = in_dev(dev, "ops", "list", "--dev", "--data-dir", str(dev.data_dir))
            assert listed.returncode == 0, listed.stderr
            if "await Portmone's callback" in listed.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        httpx.post(f"{sandbox}/_sandbox/faults", json={"drop_callback": False, "callback_status": "PAYED"})

    lines = listed.stdout.splitlines()
    assert lines[0] == "no payouts in manual review"
    assert re.fullmatch(r"1 payout\(s\) await Portmone's callback: without one, each comes here after the callback "
                        r"timeout \(60 s\); the oldest at about \d\d:\d\d:\d\d UTC", lines[1]), lines


def test_with_the_ledger_down_ops_names_only_the_ledger(dev: DevProcess) -> None:
    url = f"postgresql+asyncpg://payouts@127.0.0.1:{free_port()}/payouts"

    result = in_dev(dev, "ops", "list", "--dev", "--data-dir", str(dev.data_dir), LEDGER_URL=url)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the ledger is not answering at {url} (connection refused). `payouts dev` starts everything on "
        "this machine (docs/development.md); elsewhere start the database or set LEDGER_URL "
        "(docs/configuration.md), then `payouts migrate`."
    ]


async def test_the_readme_codec_example_decodes_the_history(dev: DevProcess) -> None:
    submitted = await asyncio.to_thread(
        in_dev, dev, "submit", "--dev", "--data-dir", str(dev.data_dir), "--receipt-id", "CODEC-1",
        "--telegram-id", "42", "--msisdn", TEST_PHONE, "--amount-kopecks", "2500",
    )
    assert submitted.returncode == 0, submitted.stderr
    show = [temporal_cli(), "workflow", "show", "--workflow-id", "payout-CODEC-1",
            "--address", f"127.0.0.1:{dev.ports['temporal']}", "--detailed"]

    async def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(subprocess.run, [*show, *extra], capture_output=True, text=True, timeout=60)

    # Dev: the webhook's codec endpoint, no token (docs: README "Reading the history").
    decoded = await run("--codec-endpoint", f"{dev.internal_url}/codec")
    sealed = await run()

    # Production: the codec server wants `Authorization: Bearer <WEBHOOK_CODEC_TOKEN>`.
    token, port = "codec-token-for-the-readme-test-0001", free_port()
    app = web.Application()
    setup_codec_server(app, Settings(env="dev", crypto=stack_crypto(),
                                     webhook=WebhookSettings(codec_token=SecretStr(token))))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with_token = await run("--codec-endpoint", f"http://127.0.0.1:{port}/codec", "--codec-auth", f"Bearer {token}")
        without = await run("--codec-endpoint", f"http://127.0.0.1:{port}/codec")
    finally:
        await runner.cleanup()

    for shown in (decoded, with_token):
        assert shown.returncode == 0, shown.stderr
        assert "input[0].request.receipt_id: CODEC-1" in shown.stdout
        assert "userMetadata.summary: Receipt CODEC-1: 25.00 UAH to +380•••••67" in shown.stdout
        assert TEST_PHONE not in shown.stdout
    assert sealed.returncode == 0, sealed.stderr
    assert "request.receipt_id" not in sealed.stdout
    # base64 of "binary/encrypted": without the codec the payloads stay sealed
    assert "input.payloads[0].metadata.encoding: YmluYXJ5L2VuY3J5cHRlZA==" in sealed.stdout
    assert without.returncode != 0 or "receipt_id: CODEC-1" not in without.stdout


def test_a_killed_payouts_dev_leaves_no_temporal_server_on_its_ports(tmp_path: Path) -> None:
    dev, out = start_dev(tmp_path)
    child_pids: list[int] = []
    try:
        wait_ready(dev)
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(dev.proc.pid)], capture_output=True, text=True)
        child_pids += [int(p) for p in children.stdout.split()]
        assert child_pids, "the Temporal dev server runs as a child of payouts dev"

        os.kill(dev.proc.pid, signal.SIGKILL)
        dev.proc.wait(10)

        deadline = time.monotonic() + 10
        held = dict(dev.ports)
        while held and time.monotonic() < deadline:
            held = {name: port for name, port in held.items() if _port_taken(port)}
            time.sleep(0.2)
        assert held == {}, f"still held after SIGKILL: {held}"
        while time.monotonic() < deadline and any(_alive(pid) for pid in child_pids):
            time.sleep(0.2)
        assert not [pid for pid in child_pids if _alive(pid)]
    finally:
        stop(dev)
        out.close()
        for pid in child_pids:  # when the test fails: leave no orphan behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")
