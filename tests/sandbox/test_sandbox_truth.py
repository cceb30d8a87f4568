"""The sandbox as a trustworthy model of Portmone's truth, over HTTP: replayable random choices,
mixed callback verdicts, requests attributable to receipts, and a bill state machine that no
callback or fault can break."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from portmone import BillStatus, parse_rsp
from runtime import devdefaults
from sandbox import start_sandbox
from tests.sandbox_fixtures import WAIT_SECONDS, CallbackReceiver, SandboxHandle, closed_port, sandbox_config

COMMENT = "DarnitsaCashBot receipt R-1"
MIXED_FAULTS: dict[str, Any] = {
    "http_5xx": 0.2,
    "fail_codes": {"4": 0.15, "30": 0.1},
    "drop_callback": 0.3,
    "duplicate_callback": 0.3,
    "out_of_order": 0.3,
    "callback_verdicts": {"PAYED": 0.6, "REJECTED:4": 0.1, "REJECTED:30": 0.1, "REJECTED:11": 0.1, "RETURN": 0.1},
}


def _form(comment: str = COMMENT) -> dict[str, str]:
    return {
        "method": "bills.create",
        "login": devdefaults.DEV_PORTMONE_LOGIN,
        "password": devdefaults.DEV_PORTMONE_PASSWORD,
        "version": "2",
        "payeeId": devdefaults.DEV_PAYEE_ID,
        "contractNumber": "380001234567",
        "amount": "25.00",
        "currency": "UAH",
        "comment": comment,
    }


async def _create(sandbox: SandboxHandle, comment: str = COMMENT) -> str:
    resp = await sandbox.http.post(sandbox.api_url, data=_form(comment))
    rsp = parse_rsp(resp.content, max_bytes=65536)
    assert rsp.ok and rsp.bill is not None, resp.text
    return rsp.bill.bill_id


async def _bill(sandbox: SandboxHandle, bill_id: str) -> dict[str, Any]:
    [bill] = [b for b in await sandbox.records("bills") if b["bill_id"] == bill_id]
    return bill


# ---- replayable runs --------------------------------------------------------------------------


async def _run(http: httpx.AsyncClient, base: str, *, telegram: bool = False) -> list[tuple[Any, ...]]:
    """Mixed faults, 40 bills.create; the choices the sandbox made (not ids or times)."""
    assert (await http.post(f"{base}/_sandbox/faults", json=MIXED_FAULTS)).status_code == 200
    if telegram:
        assert (await http.post(f"{base}/_sandbox/faults", json={"telegram_fail": 0.5})).status_code == 200
    # Callbacks go nowhere within the test: the plans wait a minute (cleanup cancels them).
    settings = {"callback_url": f"http://127.0.0.1:{closed_port()}/cb", "callback_delay_seconds": 60}
    assert (await http.post(f"{base}/_sandbox/settings", json=settings)).status_code == 200
    for _ in range(40):
        await http.post(f"{base}/api/directcash/", data=_form())
        if telegram:  # traffic on the other fakes draws from its own stream
            token = devdefaults.DEV_TELEGRAM_TOKEN
            await http.post(f"{base}/telegram/bot{token}/sendMessage", json={"chat_id": 1, "text": "x"})
    records = (await http.get(f"{base}/_sandbox/requests")).json()["requests"]
    return [(r["outcome"], tuple(r["faults"]), r["verdict"]) for r in records]


async def _seeded_run(seed: int | None, *, telegram: bool = False) -> tuple[int, list[tuple[Any, ...]]]:
    runner, port = await start_sandbox(sandbox_config(seed=seed), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=WAIT_SECONDS, trust_env=False) as http:
            health = (await http.get(f"{base}/_sandbox/health")).json()
            return health["seed"], await _run(http, base, telegram=telegram)
    finally:
        await runner.cleanup()


async def test_same_seed_same_choices_and_different_seeds_differ() -> None:
    seed_a, first = await _seeded_run(7)
    _, again = await _seeded_run(7, telegram=True)
    _, other = await _seeded_run(8)

    assert seed_a == 7
    assert again == first
    assert other != first
    # The run really mixed things: every kind of choice was made at least once.
    outcomes = Counter(outcome for outcome, _, _ in first)
    assert {"ok", "http_500", "fail:4", "fail:30"} <= set(outcomes)
    verdicts = {verdict for _, _, verdict in first if verdict}
    assert len(verdicts) >= 4
    faults = {f for _, applied, _ in first for f in applied}
    assert {"drop_callback", "duplicate_callback", "out_of_order"} <= faults


async def test_reset_replays_from_the_same_seed_or_a_new_one() -> None:
    runner, port = await start_sandbox(sandbox_config(seed=7), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=WAIT_SECONDS, trust_env=False) as http:
            first = await _run(http, base)
            reset = await http.post(f"{base}/_sandbox/reset")
            assert reset.json() == {"status": "reset", "seed": 7}
            assert await _run(http, base) == first

            reseeded = await http.post(f"{base}/_sandbox/reset", json={"seed": 8})
            assert reseeded.json()["seed"] == 8
            assert (await http.get(f"{base}/_sandbox/health")).json()["seed"] == 8
            on_eight = await _run(http, base)
            for bad in ({"seed": -1}, {"seed": "8"}, {"seed": True}, {"colour": 1}):
                refused = await http.post(f"{base}/_sandbox/reset", json=bad)
                assert refused.status_code == 400, bad
            assert (await http.get(f"{base}/_sandbox/health")).json()["seed"] == 8
    finally:
        await runner.cleanup()
    assert on_eight != first
    assert (await _seeded_run(8))[1] == on_eight


async def test_without_a_seed_a_random_one_is_reported_and_replays() -> None:
    seed_a, first = await _seeded_run(None)
    seed_b, _ = await _seeded_run(None)
    assert isinstance(seed_a, int) and seed_a >= 0
    assert seed_a != seed_b
    assert (await _seeded_run(seed_a))[1] == first


# ---- mixed callback verdicts ------------------------------------------------------------------


async def test_callback_verdicts_mix_every_kind(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    weights = {"PAYED": 1, "REJECTED:2": 1, "REJECTED:12": 1, "REJECTED:24": 1, "RETURN": 1}
    await sandbox.set_faults({"callback_verdicts": weights})
    bill_ids = [await _create(sandbox) for _ in range(40)]
    received = await callback_receiver.wait_for(40)
    await sandbox.wait_idle()

    requests = {r["bill_id"]: r for r in await sandbox.records("requests")}
    verdicts = Counter(requests[b]["verdict"] for b in bill_ids)
    assert set(verdicts) == set(weights)
    bills = {b["bill_id"]: b for b in await sandbox.records("bills")}
    callbacks = {c["bill_id"]: c for c in await sandbox.records("callbacks")}
    for item in received:
        rsp = parse_rsp(item.body, max_bytes=65536)
        assert rsp.bill is not None
        bill_id = rsp.bill.bill_id
        verdict = requests[bill_id]["verdict"]
        assert bills[bill_id]["verdict"] == callbacks[bill_id]["verdict"] == verdict
        if verdict == "PAYED":
            assert rsp.ok and rsp.bill.status is BillStatus.PAYED
            assert bills[bill_id]["status"] == "PAYED"
        elif verdict == "RETURN":
            assert rsp.ok and rsp.bill.status is BillStatus.RETURN
            assert [h["status"] for h in bills[bill_id]["history"]] == ["CREATED", "PAYED", "RETURN"]
        else:
            assert not rsp.ok and rsp.error is not None
            assert f"REJECTED:{rsp.error.code}" == verdict
            assert rsp.bill.status is BillStatus.REJECTED
            assert bills[bill_id]["status"] == "REJECTED"


async def test_callback_verdicts_weights_override_and_switch_off(
    sandbox: SandboxHandle, callback_receiver: CallbackReceiver
) -> None:
    await sandbox.set_faults({"callback_status": "REJECTED", "callback_error_code": "30"})
    shown = await sandbox.set_faults({"callback_verdicts": {"payed": 0, "rejected:3": 2.5, "Return": 0}})
    assert shown["callback_verdicts"] == {"PAYED": 0, "REJECTED:3": 2.5, "RETURN": 0}
    for _ in range(10):
        await _create(sandbox)
    off = await sandbox.set_faults({"callback_verdicts": None})
    assert off["callback_verdicts"] is None
    await _create(sandbox)
    await callback_receiver.wait_for(11)
    verdicts = [r["verdict"] for r in await sandbox.records("requests")]
    # Zero weights are never chosen; verdicts override callback_status; null gives it back.
    assert verdicts == ["REJECTED:3"] * 10 + ["REJECTED:30"]


async def test_callback_verdicts_round_trip(sandbox: SandboxHandle) -> None:
    url = f"{sandbox.base_url}/_sandbox/faults"
    first = await sandbox.set_faults({"callback_verdicts": {"REJECTED": 1, "payed": 3.5}, "drop_callback": 0.5})
    assert first["callback_verdicts"] == {"REJECTED:30": 1, "PAYED": 3.5}
    again = await sandbox.http.post(url, params={"mode": "replace"}, json=first)
    assert again.status_code == 200, again.text
    assert again.json() == first


# ---- every request attributable --------------------------------------------------------------


async def test_a_5xx_faulted_request_records_its_parameters(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults({"http_5xx": {"times": 1, "status": 502}})
    resp = await sandbox.http.post(sandbox.api_url, data=_form("DarnitsaCashBot receipt R-5xx"))
    assert resp.status_code == 502
    [record] = await sandbox.records("requests")
    assert record["outcome"] == "http_502"
    assert record["method"] == "bills.create"
    assert record["params"]["comment"] == "DarnitsaCashBot receipt R-5xx"
    assert record["params"]["password"] == "***"
    assert record["params"]["contractNumber"] == "+380•••••67"
    assert await sandbox.records("bills") == []


async def test_a_delayed_request_records_its_parameters_before_the_delay(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults({"latency_ms": {"times": 1, "ms": 1500}})
    pending = asyncio.create_task(sandbox.http.post(sandbox.api_url, data=_form("DarnitsaCashBot receipt R-slow")))
    async with asyncio.timeout(WAIT_SECONDS):
        while not (records := await sandbox.records("requests")):
            await asyncio.sleep(0.01)
    [in_flight] = records
    assert in_flight["outcome"] is None  # still held by the latency fault
    assert in_flight["faults"] == ["latency_ms=1500"]
    assert in_flight["method"] == "bills.create"
    assert in_flight["params"]["comment"] == "DarnitsaCashBot receipt R-slow"
    assert (await pending).status_code == 200


async def test_bills_filter_by_exact_comment(sandbox: SandboxHandle) -> None:
    r1 = [await _create(sandbox, "DarnitsaCashBot receipt R-1") for _ in range(2)]
    await _create(sandbox, "DarnitsaCashBot receipt R-10")
    await _create(sandbox, "DarnitsaCashBot receipt R-2")
    url = f"{sandbox.base_url}/_sandbox/bills"
    found = (await sandbox.http.get(url, params={"comment": "DarnitsaCashBot receipt R-1"})).json()["bills"]
    assert [b["bill_id"] for b in found] == r1
    none = (await sandbox.http.get(url, params={"comment": "DarnitsaCashBot receipt"})).json()["bills"]
    assert none == []
    assert len((await sandbox.http.get(url)).json()["bills"]) == 4
    bad = await sandbox.http.get(url, params={"receipt": "R-1"})
    assert bad.status_code == 400
    assert "comment" in bad.json()["error"]


# ---- the bill state machine --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "status", "history"),
    [
        ("PAYED", "PAYED", ["CREATED", "PAYED"]),
        ("REJECTED:4", "REJECTED", ["CREATED", "REJECTED"]),
        ("RETURN", "RETURN", ["CREATED", "PAYED", "RETURN"]),
    ],
)
async def test_a_dropped_callback_still_settles_the_bill(
    sandbox: SandboxHandle, callback_receiver: CallbackReceiver, verdict: str, status: str, history: list[str]
) -> None:
    await sandbox.set_faults({"drop_callback": True, "callback_verdicts": {verdict: 1}})
    bill_id = await _create(sandbox)
    await sandbox.wait_idle()

    bill = await _bill(sandbox, bill_id)
    assert bill["status"] == status
    assert [h["status"] for h in bill["history"]] == history
    [record] = await sandbox.records("callbacks")
    assert record["dropped"] is True and record["delivered"] is False and record["attempts"] == []
    assert (record["verdict"], record["bill_status"]) == (verdict, status)
    assert status in record["note"]
    assert callback_receiver.received == []


async def test_cancel_an_open_bill(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    await sandbox.set_callbacks(callback_receiver.url, delay=0.5)  # the plan is still waiting
    bill_id = await _create(sandbox)
    url = f"{sandbox.base_url}/_sandbox/bills/{bill_id}/cancel"
    resp = await sandbox.http.post(url, json={"reason": "operator confirmed no payment"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"
    assert resp.json()["bill"]["status"] == "REJECTED"
    again = await sandbox.http.post(url)
    assert again.status_code == 409
    assert "only an open (CREATED) bill can be cancelled" in again.json()["error"]
    await sandbox.wait_idle()

    bill = await _bill(sandbox, bill_id)
    assert (bill["status"], bill["cancelled"]) == ("REJECTED", True)
    assert bill["history"][-1]["cause"] == "cancelled"
    assert bill["history"][-1]["reason"] == "operator confirmed no payment"
    # The scheduled PAYED callback came due on a cancelled bill: skipped, with the reason, nothing sent.
    [plan] = await sandbox.records("callbacks")
    assert plan["verdict"] == "PAYED"
    assert plan["delivered"] is False and plan["attempts"] == []
    assert "cancelled" in plan["skipped"]
    assert plan["bill_status"] == "REJECTED"
    assert callback_receiver.received == []
    missing = await sandbox.http.post(f"{sandbox.base_url}/_sandbox/bills/nope/cancel")
    assert missing.status_code == 404


@pytest.mark.parametrize("verdict", ["PAYED", "REJECTED:30", "RETURN"])
async def test_a_settled_bill_cannot_be_cancelled(
    sandbox: SandboxHandle, callback_receiver: CallbackReceiver, verdict: str
) -> None:
    await sandbox.set_faults({"callback_verdicts": {verdict: 1}})
    bill_id = await _create(sandbox)
    await sandbox.wait_idle()
    status = (await _bill(sandbox, bill_id))["status"]
    resp = await sandbox.http.post(f"{sandbox.base_url}/_sandbox/bills/{bill_id}/cancel")
    assert resp.status_code == 409
    assert f"is {status}" in resp.json()["error"]
    bill = await _bill(sandbox, bill_id)
    assert (bill["status"], bill["cancelled"]) == (status, False)


async def test_on_demand_callbacks_follow_the_state_machine(
    sandbox: SandboxHandle, callback_receiver: CallbackReceiver
) -> None:
    await sandbox.set_callbacks(callback_receiver.url, delay=60)  # the plan never comes due here
    open_bill = await _create(sandbox)
    cancelled = await _create(sandbox)
    base = f"{sandbox.base_url}/_sandbox/bills"

    async def send(bill_id: str, status: str) -> httpx.Response:
        return await sandbox.http.post(f"{base}/{bill_id}/callback", json={"status": status})

    early_return = await send(open_bill, "RETURN")
    assert early_return.status_code == 409
    assert "RETURN comes only after PAYED" in early_return.json()["error"]
    assert (await sandbox.http.post(f"{base}/{cancelled}/cancel")).status_code == 200
    paid_after_cancel = await send(cancelled, "PAYED")
    assert paid_after_cancel.status_code == 409
    assert "cancelled" in paid_after_cancel.json()["error"]

    steps = [("PAYED", 200), ("PAYED", 200), ("CREATED", 200), ("REJECTED", 409), ("RETURN", 200),
             ("PAYED", 409), ("REJECTED", 409), ("RETURN", 200)]
    for status, expected in steps:
        resp = await send(open_bill, status)
        assert resp.status_code == expected, (status, resp.text)
        if expected == 409:
            assert resp.json()["bill"]["bill_id"] == open_bill

    assert (await _bill(sandbox, cancelled))["status"] == "REJECTED"
    bill = await _bill(sandbox, open_bill)
    assert bill["status"] == "RETURN"
    assert [h["status"] for h in bill["history"]] == ["CREATED", "PAYED", "RETURN"]
    sent = [parse_rsp(r.body, max_bytes=65536).bill for r in callback_receiver.received]
    assert [b.status for b in sent if b] == [
        BillStatus.PAYED, BillStatus.PAYED, BillStatus.CREATED, BillStatus.RETURN, BillStatus.RETURN
    ]
    on_demand = [c for c in await sandbox.records("callbacks") if c["kind"] == "on_demand"]
    assert [c["bill_status"] for c in on_demand] == ["PAYED", "PAYED", "PAYED", "RETURN", "RETURN"]


async def test_a_plan_never_overrides_an_on_demand_verdict(
    sandbox: SandboxHandle, callback_receiver: CallbackReceiver
) -> None:
    await sandbox.set_callbacks(callback_receiver.url, delay=0.5)
    await sandbox.set_faults({"callback_verdicts": {"REJECTED:30": 1}, "duplicate_callback": True})
    bill_id = await _create(sandbox)
    resp = await sandbox.http.post(f"{sandbox.base_url}/_sandbox/bills/{bill_id}/callback", json={"status": "PAYED"})
    assert resp.status_code == 200, resp.text
    await sandbox.wait_idle()

    assert (await _bill(sandbox, bill_id))["status"] == "PAYED"
    on_demand, plan = await sandbox.records("callbacks")
    assert on_demand["kind"] == "on_demand" and on_demand["delivered"] is True
    assert plan["kind"] == "final" and plan["verdict"] == "REJECTED:30"
    assert plan["delivered"] is False and "settled by an on-demand callback" in plan["skipped"]
    [received] = callback_receiver.received  # neither the REJECTED callback nor its duplicate went out
    assert parse_rsp(received.body, max_bytes=65536).ok
