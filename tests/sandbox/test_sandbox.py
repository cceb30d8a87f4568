"""The sandbox over raw HTTP, as curl would talk to it: the Portmone profile, the fakes, the controls."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from portmone import BillStatus, parse_rsp
from runtime import devdefaults
from runtime.settings import PortmoneSettings, SandboxSettings, Settings, TelegramSettings
from sandbox import FaultError, FaultTable, SandboxConfig, sandbox_state, start_sandbox
from tests.sandbox_fixtures import TEST_PHONE, SandboxHandle, sandbox_config

TOKEN = devdefaults.DEV_TELEGRAM_TOKEN


def _form(**overrides: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "method": "bills.create",
        "login": devdefaults.DEV_PORTMONE_LOGIN,
        "password": devdefaults.DEV_PORTMONE_PASSWORD,
        "version": "2",
        "payeeId": devdefaults.DEV_PAYEE_ID,
        "contractNumber": TEST_PHONE,
        "amount": "25.00",
        "currency": "UAH",
        "comment": "receipt r-1",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


async def _post(sandbox: SandboxHandle, **overrides: str | None) -> httpx.Response:
    return await sandbox.http.post(sandbox.api_url, data=_form(**overrides))


# ---- Portmone endpoint ------------------------------------------------------------------------


async def test_ok_answer_shape(sandbox: SandboxHandle) -> None:
    resp = await _post(sandbox)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/xml; charset=utf-8"
    assert resp.content.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    rsp = parse_rsp(resp.content, max_bytes=65536)
    assert rsp.ok
    assert rsp.bill is not None
    assert rsp.bill.status is BillStatus.CREATED
    assert rsp.bill.amount_kopecks == 2500
    assert rsp.bill.payee_id == devdefaults.DEV_PAYEE_ID
    assert b"<date>" in resp.content
    date = resp.content.split(b"<date>")[1].split(b"</date>")[0].decode()
    day, month, year = date.split(".")
    assert (len(day), len(month), len(year)) == (2, 2, 4)


async def test_get_is_refused(sandbox: SandboxHandle) -> None:
    resp = await sandbox.http.get(sandbox.api_url, params=_form())
    assert resp.status_code == 405
    assert await sandbox.records("bills") == []


async def test_json_body_is_refused(sandbox: SandboxHandle) -> None:
    resp = await sandbox.http.post(sandbox.api_url, json=_form())
    rsp = parse_rsp(resp.content, max_bytes=65536)
    assert rsp.error is not None
    assert rsp.error.code == "12"
    assert await sandbox.records("bills") == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"login": "someone"}, "10"),
        ({"password": "wrong"}, "10"),
        ({"password": None}, "10"),
        ({"version": "3"}, "11"),
        ({"version": "2.0"}, "11"),
        ({"method": "bills.delete"}, "12"),
        ({"method": None}, "12"),
        ({"payeeId": "other-payee"}, "13"),
        ({"payeeId": None}, "13"),
        ({"contractNumber": "0671234567"}, "20"),
        ({"contractNumber": "38000123456"}, "20"),
        ({"contractNumber": None}, "20"),
        ({"amount": "0.00"}, "21"),
        ({"amount": "-1.00"}, "21"),
        ({"amount": "1e3"}, "21"),
        ({"amount": "25,00"}, "21"),
        ({"amount": "1.234"}, "21"),
        ({"amount": None}, "21"),
        ({"amount": "10000.01"}, "23"),
        ({"currency": "USD"}, "22"),
        ({"currency": None}, "22"),
    ],
)
async def test_form_validation(sandbox: SandboxHandle, overrides: dict[str, str | None], code: str) -> None:
    resp = await _post(sandbox, **overrides)
    assert resp.status_code == 200
    rsp = parse_rsp(resp.content, max_bytes=65536)
    assert rsp.ok is False
    assert rsp.error is not None
    assert rsp.error.code == code
    assert await sandbox.records("bills") == []
    requests = await sandbox.records("requests")
    assert requests[-1]["outcome"] == f"fail:{code}"


async def test_missing_version_means_version_1(sandbox: SandboxHandle) -> None:
    fail = await _post(sandbox, version=None, payeeId="x")
    assert b"<error_description>" not in fail.content
    assert b'<error code="13">' in fail.content
    ok = await _post(sandbox, version=None)
    assert parse_rsp(ok.content, max_bytes=65536).ok


@pytest.mark.parametrize(
    ("lang", "short", "long"),
    [
        (None, "Невідомий отримувач", "Отримувача (payeeId) не знайдено."),
        ("uk", "Невідомий отримувач", "Отримувача (payeeId) не знайдено."),
        ("ru", "Неизвестный получатель", "Получатель (payeeId) не найден."),
        ("en", "Unknown payee", "The payee (payeeId) was not found."),
        ("de", "Невідомий отримувач", "Отримувача (payeeId) не знайдено."),
    ],
)
async def test_lang_switches_the_messages(
    sandbox: SandboxHandle, lang: str | None, short: str, long: str
) -> None:
    rsp = parse_rsp((await _post(sandbox, lang=lang, payeeId="x")).content, max_bytes=65536)
    assert rsp.error is not None
    assert rsp.error.message == short
    assert rsp.error.description == long


async def test_requests_and_bills_are_recorded_redacted(sandbox: SandboxHandle) -> None:
    resp = await _post(sandbox)
    bill_id = parse_rsp(resp.content, max_bytes=65536).bill.bill_id  # type: ignore[union-attr]
    [request] = await sandbox.records("requests")
    assert request["method"] == "bills.create"
    assert request["params"]["password"] == "***"
    assert request["params"]["contractNumber"] == "+380•••••67"
    assert request["outcome"] == "ok"
    assert request["bill_id"] == bill_id
    assert request["at"]
    [bill] = await sandbox.records("bills")
    assert bill["bill_id"] == bill_id
    assert bill["contract_masked"] == "+380•••••67"
    assert bill["status"] == "CREATED"
    for what in ("requests", "bills"):
        dumped = json.dumps(await sandbox.records(what), ensure_ascii=False)
        assert TEST_PHONE not in dumped
        assert devdefaults.DEV_PORTMONE_PASSWORD not in dumped


async def test_body_size_is_capped(sandbox: SandboxHandle) -> None:
    resp = await _post(sandbox, comment="x" * (sandbox.state.config.max_body_bytes + 10))
    assert resp.status_code == 413
    assert await sandbox.records("bills") == []
    [request] = await sandbox.records("requests")
    assert (request["outcome"], request["http_status"]) == ("http_413", 413)


async def test_http_5xx_fault_creates_no_bill(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults({"http_5xx": {"status": 503, "times": 2}})
    statuses = [(await _post(sandbox)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(await sandbox.records("bills")) == 1
    faults = await sandbox.set_faults({})
    assert faults["http_5xx"]["times"] == 0


async def test_hang_does_not_block_server_shutdown() -> None:
    runner, port = await start_sandbox(sandbox_config(hang_seconds=600.0), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        resp = await http.post(f"{base}/_sandbox/faults", json={"commit_then_hang": True})
        assert resp.status_code == 200
        hanging = asyncio.create_task(http.post(f"{base}/api/directcash/", data=_form()))
        async with asyncio.timeout(10):
            while not [r for r in _requests(runner) if r["outcome"] == "hang"]:
                await asyncio.sleep(0.01)
        # Without the release on shutdown this would wait hang_seconds (600 s), far past the guard.
        async with asyncio.timeout(10):
            await runner.cleanup()
        with pytest.raises(httpx.HTTPError):
            await hanging


def _requests(runner: Any) -> list[dict[str, Any]]:
    return list(sandbox_state(runner.app).requests)


# ---- faults control ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"no_such_fault": 1}', "unknown fault"),
        (b'{"http_5xx": 1.5}', "between 0 and 1"),
        (b'{"http_5xx": {"probability": 1, "times": -1}}', "times"),
        (b'{"http_5xx": {"status": 404}}', "status"),
        (b'{"http_5xx": {"colour": "red"}}', "unknown field"),
        (b'{"latency_ms": "slow"}', "latency_ms"),
        (b'{"fail_codes": [1, 2]}', "fail_codes"),
        (b'{"fail_codes": {"4": "often"}}', "fail_codes.4"),
        (b'{"callback_status": 7}', "callback_status"),
        (b'{"callback_verdicts": {"PAID": 1}}', "unknown verdict 'PAID'"),
        (b'{"callback_verdicts": {"REJECTED:99": 1}}', "not in Portmone's error catalogue"),
        (b'{"callback_verdicts": {"REJECTED:": 1}}', "not in Portmone's error catalogue"),
        (b'{"callback_verdicts": {"PAYED:4": 1}}', "PAYED takes no error code"),
        (b'{"callback_verdicts": {"PAYED": 1, "payed": 1}}', "PAYED is given twice"),
        (b'{"callback_verdicts": {"PAYED": -0.5, "RETURN": 1}}', "callback_verdicts.PAYED must not be negative"),
        (b'{"callback_verdicts": {"PAYED": 0, "RETURN": 0}}', "add up to more than 0"),
        (b'{"callback_verdicts": {"PAYED": "often"}}', "callback_verdicts.PAYED must be a number"),
        (b'{"callback_verdicts": {}}', "non-empty object"),
        (b'{"callback_verdicts": ["PAYED"]}', "non-empty object"),
        (b"[1, 2]", "JSON object"),
    ],
)
async def test_bad_faults_are_refused_and_change_nothing(
    sandbox: SandboxHandle, body: bytes, message: str
) -> None:
    before = await sandbox.set_faults({"drop_callback": {"probability": 0.5, "times": 3}})
    resp = await sandbox.http.post(
        f"{sandbox.base_url}/_sandbox/faults", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert message in resp.json()["error"]
    after = (await sandbox.http.get(f"{sandbox.base_url}/_sandbox/faults")).json()
    assert after == before


async def test_faults_merge_replace_and_reset(sandbox: SandboxHandle) -> None:
    merged = await sandbox.set_faults({"fail_codes": {"4": 0.25}, "latency_ms": 10})
    merged = await sandbox.set_faults({"duplicate_callback": True})
    assert merged["fail_codes"] == {"4": {"probability": 0.25, "times": None}}
    assert merged["latency_ms"] == {"probability": 1.0, "times": None, "ms": 10}
    assert merged["duplicate_callback"] == {"probability": 1.0, "times": None}
    assert merged["callback_status"] == "PAYED"
    replaced = await sandbox.set_faults({"out_of_order": True}, replace=True)
    assert replaced["fail_codes"] == {}
    assert replaced["duplicate_callback"] is None
    assert replaced["out_of_order"] is not None
    cleared = await sandbox.set_faults({"out_of_order": None})
    assert cleared["out_of_order"] is None
    await sandbox.set_faults({"drop_callback": True})
    await _post(sandbox)
    assert (await sandbox.http.post(f"{sandbox.base_url}/_sandbox/reset")).status_code == 200
    assert (await sandbox.http.get(f"{sandbox.base_url}/_sandbox/faults")).json()["drop_callback"] is None
    assert await sandbox.records("requests") == []
    assert await sandbox.records("bills") == []


def test_fault_table_is_deterministic_with_a_seed_and_counts_down() -> None:
    def fires(seed: int) -> list[bool]:
        table = FaultTable.from_json({"drop_callback": 0.5})
        rng = random.Random(seed)
        return [table.roll("drop_callback", rng) is not None for _ in range(40)]

    assert fires(7) == fires(7)
    assert 0 < sum(fires(7)) < 40
    table = FaultTable.from_json({"fail_codes": {"30": {"times": 2}}})
    rng = random.Random(1)
    assert [table.roll_fail_code(rng) for _ in range(3)] == ["30", "30", None]
    with pytest.raises(FaultError):
        table.merged({"nope": True})


async def test_settings_control(sandbox: SandboxHandle) -> None:
    url = f"{sandbox.base_url}/_sandbox/settings"
    bad = await sandbox.http.post(url, json={"callback_url": "ftp://x"})
    assert bad.status_code == 400
    bad = await sandbox.http.post(url, json={"callback_delay_seconds": -1})
    assert bad.status_code == 400
    ok = await sandbox.http.post(
        url, json={"callback_url": "http://127.0.0.1:9/cb", "callback_delay_seconds": 0.1}
    )
    assert ok.json() == {"callback_url": "http://127.0.0.1:9/cb", "callback_delay_seconds": 0.1}
    assert (await sandbox.http.get(url)).json()["callback_url"] == "http://127.0.0.1:9/cb"


async def test_on_demand_callback_validation(sandbox: SandboxHandle) -> None:
    bill_id = parse_rsp((await _post(sandbox)).content, max_bytes=65536).bill.bill_id  # type: ignore[union-attr]
    url = f"{sandbox.base_url}/_sandbox/bills/{bill_id}/callback"
    assert (await sandbox.http.post(url, json={"status": "MAYBE"})).status_code == 400
    assert (await sandbox.http.post(url, json={"status": "PAYED", "error_code": "4"})).status_code == 400
    no_url = await sandbox.http.post(url, json={"status": "PAYED"})
    assert no_url.status_code == 409
    assert "callback_url" in no_url.json()["error"]


async def test_health(sandbox: SandboxHandle) -> None:
    resp = await sandbox.http.get(f"{sandbox.base_url}/_sandbox/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    assert resp.json()["seed"] == sandbox.state.config.seed == 1234


# ---- Telegram fake ----------------------------------------------------------------------------


def _tg(sandbox: SandboxHandle, method: str, token: str = TOKEN) -> str:
    return f"{sandbox.base_url}/telegram/bot{token}/{method}"


async def test_telegram_send_and_edit(sandbox: SandboxHandle) -> None:
    sent = await sandbox.http.post(_tg(sandbox, "sendMessage"), json={"chat_id": 42, "text": "processing"})
    assert sent.status_code == 200
    body = sent.json()
    assert body["ok"] is True
    result = body["result"]
    assert result["chat"] == {"id": 42, "type": "private", "first_name": "Sandbox user"}
    assert result["text"] == "processing"
    assert isinstance(result["message_id"], int)
    assert isinstance(result["date"], int)
    form = await sandbox.http.post(_tg(sandbox, "sendMessage"), data={"chat_id": "42", "text": "second"})
    assert form.json()["result"]["message_id"] == result["message_id"] + 1
    edited = await sandbox.http.post(
        _tg(sandbox, "editMessageText"),
        json={"chat_id": 42, "message_id": result["message_id"], "text": "paid"},
    )
    assert edited.status_code == 200
    assert edited.json()["result"]["text"] == "paid"
    assert "edit_date" in edited.json()["result"]
    records = await sandbox.records("telegram")
    assert [r["method"] for r in records] == ["sendMessage", "sendMessage", "editMessageText"]
    assert [r["http_status"] for r in records] == [200, 200, 200]


@pytest.mark.parametrize(
    ("method", "token", "payload", "status", "description"),
    [
        ("sendMessage", "wrong-token", {"chat_id": 1, "text": "x"}, 401, "Unauthorized"),
        ("sendMessage", TOKEN, {"text": "x"}, 400, "Bad Request: chat_id is empty"),
        ("sendMessage", TOKEN, {"chat_id": 1}, 400, "Bad Request: message text is empty"),
        (
            "editMessageText",
            TOKEN,
            {"chat_id": 1, "message_id": 999, "text": "x"},
            400,
            "message to edit not found",
        ),
        ("deleteEverything", TOKEN, {"chat_id": 1}, 404, "Not Found"),
    ],
)
async def test_telegram_errors(
    sandbox: SandboxHandle, method: str, token: str, payload: dict[str, Any], status: int, description: str
) -> None:
    resp = await sandbox.http.post(_tg(sandbox, method, token), json=payload)
    assert resp.status_code == status
    body = resp.json()
    assert body["ok"] is False
    assert body["error_code"] == status
    assert description in body["description"]


async def test_telegram_fail_fault(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults({"telegram_fail": {"times": 1, "status": 429}})
    limited = await sandbox.http.post(_tg(sandbox, "sendMessage"), json={"chat_id": 1, "text": "x"})
    assert limited.status_code == 429
    assert limited.json()["parameters"] == {"retry_after": 1}
    assert limited.json()["ok"] is False
    ok = await sandbox.http.post(_tg(sandbox, "sendMessage"), json={"chat_id": 1, "text": "x"})
    assert ok.status_code == 200


async def test_telegram_records_mask_phones(sandbox: SandboxHandle) -> None:
    await sandbox.http.post(
        _tg(sandbox, "sendMessage"), json={"chat_id": 1, "text": f"top-up to {TEST_PHONE}"}
    )
    assert TEST_PHONE not in json.dumps(await sandbox.records("telegram"), ensure_ascii=False)


# ---- telecom fake -----------------------------------------------------------------------------


def _topup(**overrides: Any) -> dict[str, Any]:
    body = {"msisdn": TEST_PHONE, "amount_kopecks": 2500, "currency": "UAH", "reference": "payout-1"}
    body.update(overrides)
    return body


async def test_telecom_requires_an_idempotency_key(sandbox: SandboxHandle) -> None:
    resp = await sandbox.http.post(f"{sandbox.base_url}/telecom/topups", json=_topup())
    assert resp.status_code == 400
    assert "Idempotency-Key" in resp.json()["error"]


async def test_telecom_is_idempotent(sandbox: SandboxHandle) -> None:
    url = f"{sandbox.base_url}/telecom/topups"
    first = await sandbox.http.post(url, json=_topup(), headers={"Idempotency-Key": "payout-1"})
    second = await sandbox.http.post(url, json=_topup(), headers={"Idempotency-Key": "payout-1"})
    assert first.status_code == second.status_code == 200
    assert first.json()["topup_id"] == second.json()["topup_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    other = await sandbox.http.post(url, json=_topup(), headers={"Idempotency-Key": "payout-2"})
    assert other.json()["topup_id"] != first.json()["topup_id"]
    conflict = await sandbox.http.post(
        url, json=_topup(amount_kopecks=1), headers={"Idempotency-Key": "payout-1"}
    )
    assert conflict.status_code == 409
    calls = await sandbox.records("telecom")
    assert [c["outcome"] for c in calls] == ["topped_up", "replayed", "topped_up", "conflict"]
    assert len(sandbox.state.topups) == 2
    dumped = json.dumps(calls, ensure_ascii=False)
    assert TEST_PHONE not in dumped
    assert calls[0]["msisdn_masked"] == "+380•••••67"


@pytest.mark.parametrize(
    "body",
    [
        _topup(msisdn="067"),
        _topup(amount_kopecks=0),
        _topup(amount_kopecks=2.5),
        _topup(currency="USD"),
        _topup(reference=""),
    ],
)
async def test_telecom_validates_the_body(sandbox: SandboxHandle, body: dict[str, Any]) -> None:
    resp = await sandbox.http.post(
        f"{sandbox.base_url}/telecom/topups", json=body, headers={"Idempotency-Key": "k"}
    )
    assert resp.status_code == 400
    assert sandbox.state.topups == {}


async def test_telecom_fail_fault_tops_up_nothing(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults({"telecom_fail": {"times": 1}})
    url = f"{sandbox.base_url}/telecom/topups"
    failed = await sandbox.http.post(url, json=_topup(), headers={"Idempotency-Key": "k1"})
    assert failed.status_code == 503
    assert sandbox.state.topups == {}
    retried = await sandbox.http.post(url, json=_topup(), headers={"Idempotency-Key": "k1"})
    assert retried.status_code == 200


# ---- configuration ----------------------------------------------------------------------------


def test_config_from_settings_uses_settings_then_dev_defaults() -> None:
    settings = Settings(
        portmone=PortmoneSettings(login="", payee_id="p-1", payee_prefixes={"38067": "p-kyivstar"}),
        sandbox=SandboxSettings(
            callback_url="http://127.0.0.1:8080/portmone/callback", callback_delay_seconds=0.2, seed=5
        ),
        telegram=TelegramSettings(),
    )
    config = SandboxConfig.from_settings(settings)
    assert config.login == devdefaults.DEV_PORTMONE_LOGIN
    assert config.password == devdefaults.DEV_PORTMONE_PASSWORD
    assert config.payee_ids == {"p-1", "p-kyivstar"}
    assert config.callback_url == "http://127.0.0.1:8080/portmone/callback"
    assert config.callback_delay_seconds == 0.2
    assert config.seed == 5
    assert SandboxConfig.from_settings(settings, seed=42).seed == 42  # the --seed flag wins
    assert config.telegram_token == devdefaults.DEV_TELEGRAM_TOKEN
    assert devdefaults.DEV_PORTMONE_PASSWORD not in repr(config)
    empty = PortmoneSettings(login="", password=SecretStr(""), payee_id="", payee_prefixes={})
    bare = SandboxConfig.from_settings(Settings(portmone=empty, sandbox=SandboxSettings(callback_url=None)))
    assert bare.payee_ids == {devdefaults.DEV_PAYEE_ID}
    assert bare.seed is None
