"""The command line as an operator meets it: a production webhook without callback authentication
(or without codec keys) does not start; `payouts submit` signs when intake signing is configured;
`payouts dev` runs with signed callbacks and wires the Web UI to the codec server."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from console.dev import stop_process
from payouts.models import payout_workflow_id
from runtime import devdefaults
from runtime.settings import ConfigError, load_settings
from runtime.temporal_client import data_converter
from tests.cli_helpers import clean_env, payouts
from tests.stack import TEST_PHONE, Stack, free_port, stack_crypto
from tests.stack_checks import extra_webhook, with_webhook, workflow_exists

INTAKE_SECRET = "cli-intake-signing-secret-000000000000001"




async def test_a_production_webhook_without_its_security_settings_does_not_start(tmp_path: Path) -> None:
    only_callbacks_missing = clean_env(
        PAYOUTS_FERNET_KEYS=devdefaults.DEV_FERNET_KEY,
        PAYOUTS_HMAC_KEY="h" * 40,
        PAYOUTS_CODEC_KEYS=devdefaults.DEV_CODEC_KEYS,
        WEBHOOK_INTAKE_TOKEN="t" * 40,
    )
    weak = clean_env(WEBHOOK_CALLBACK_HMAC_SECRETS="tiny-secret")
    first, second = await asyncio.gather(
        asyncio.to_thread(payouts, "webhook", env=only_callbacks_missing, cwd=tmp_path),
        asyncio.to_thread(payouts, "webhook", env=weak, cwd=tmp_path),
    )

    assert first.returncode == 2
    assert "no Portmone callback authentication is configured" in first.stderr
    for name in ("WEBHOOK_CALLBACK_HMAC_SECRETS", "WEBHOOK_CALLBACK_ALLOWED_CIDRS", "WEBHOOK_TLS_CLIENT_FINGERPRINTS"):
        assert name in first.stderr
    assert second.returncode == 2
    for name in ("PAYOUTS_CODEC_KEYS", "WEBHOOK_INTAKE_TOKEN", "WEBHOOK_CALLBACK_HMAC_SECRETS: every secret"):
        assert name in second.stderr
    assert "tiny-secret" not in second.stderr
    assert "Traceback" not in first.stderr + second.stderr


def test_invalid_network_lists_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_CALLBACK_ALLOWED_CIDRS", "10.0.0.0/8, not-a-net")
    monkeypatch.setenv("WEBHOOK_TLS_CLIENT_FINGERPRINTS", "ab:cd")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "WEBHOOK_CALLBACK_ALLOWED_CIDRS" in str(err.value) and "entry 2" in str(err.value)
    assert "WEBHOOK_TLS_CLIENT_FINGERPRINTS" in str(err.value)


async def test_submit_signs_the_receipt_when_intake_signing_is_configured(stack: Stack, tmp_path: Path) -> None:
    settings = with_webhook(stack.settings, env="production", intake_token="", intake_hmac_secrets=INTAKE_SECRET)
    async with extra_webhook(stack, settings) as urls:
        result = await asyncio.to_thread(
            payouts, "submit", "--receipt-id", "CLI-SIGNED-1", "--telegram-id", "42", "--msisdn", TEST_PHONE,
            "--amount-kopecks", "2500", "--webhook-url", urls.internal,
            env=clean_env(WEBHOOK_INTAKE_HMAC_SECRETS=INTAKE_SECRET, WEBHOOK_INTAKE_TOKEN="not-the-token"),
            cwd=tmp_path,
        )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["workflow_id"] == payout_workflow_id("CLI-SIGNED-1")
    assert await workflow_exists(stack.client, payout_workflow_id("CLI-SIGNED-1"))


async def _until(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def test_payouts_dev_signs_callbacks_and_wires_the_web_ui_to_the_codec_server(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("temporal", "ui", "webhook", "internal", "sandbox", "metrics")}
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "dev", "--data-dir", str(tmp_path / ".data"),
         *(f"--{name}-port={port}" for name, port in ports.items())],
        env=clean_env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )
    public = f"http://127.0.0.1:{ports['webhook']}"  # Portmone's callbacks
    webhook = f"http://127.0.0.1:{ports['internal']}"  # intake, codec, health
    ui = f"http://127.0.0.1:{ports['ui']}"
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            await _until(lambda: _ok(http, f"{webhook}/healthz"))
            await _until(lambda: _ok(http, f"{ui}/api/v1/settings"))
            ui_settings = (await http.get(f"{ui}/api/v1/settings")).json()
            preflight = await http.options(f"{webhook}/codec/decode", headers={
                "Origin": ui, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace"})
            unsigned = await http.post(f"{public}/portmone/callback", content=b'<rsp status="ok"/>',
                                       headers={"Content-Type": "application/xml"})

            submitted = await asyncio.to_thread(
                payouts, "submit", "--receipt-id", "DEV-1", "--telegram-id", "42", "--msisdn", TEST_PHONE,
                "--amount-kopecks", "2500", "--webhook-url", webhook, env=clean_env(), cwd=tmp_path,
            )
            assert submitted.returncode == 0, submitted.stderr

            async def delivered() -> bool:
                record = (await http.get(f"http://127.0.0.1:{ports['sandbox']}/_sandbox/callbacks")).json()
                return any(c["delivered"] for c in record["callbacks"])

            await _until(delivered)
            client = await Client.connect(
                f"127.0.0.1:{ports['temporal']}", data_converter=data_converter(stack_crypto())
            )
            handle = client.get_workflow_handle(payout_workflow_id("DEV-1"))
            result = await handle.result()
            history = json.loads((await handle.fetch_history()).to_json())
            sealed = history["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"]
            decoded = await http.post(f"{webhook}/codec/decode", json={"payloads": sealed},
                                      headers={"Origin": ui, "X-Namespace": "default"})
    finally:
        stop_process(proc, 30, signal.SIGINT)
        log.close()

    assert ui_settings["Codec"]["Endpoint"] == f"{webhook}/codec"
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == ui
    assert unsigned.status_code == 401  # dev runs with callback signatures on
    assert result["status"] == "PAID"
    assert decoded.status_code == 200 and decoded.headers["Access-Control-Allow-Origin"] == ui
    workflow_input = json.loads(base64.b64decode(decoded.json()["payloads"][0]["data"]))
    assert workflow_input["request"]["receipt_id"] == "DEV-1"


async def _ok(http: httpx.AsyncClient, url: str) -> bool:
    return (await http.get(url)).status_code == 200
