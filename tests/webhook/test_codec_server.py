"""`POST /codec/encode` and `/codec/decode` over HTTP, as the Web UI and the CLI call them: the
remote codec JSON protocol, the bearer token, CORS for the UI's origin, `X-Namespace`."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from payouts.status import PayoutStatus as S
from runtime.codec import new_codec_key
from tests.callbacks import SETTLED
from tests.stack import TEST_PHONE, Stack
from tests.stack_checks import auth_failures, extra_webhook, with_webhook

UI_ORIGIN = "http://127.0.0.1:8233"
TOKEN = "codec-token-for-tests-0000000000000001"
JSON = {"Content-Type": "application/json"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _plain(value: Any) -> dict[str, Any]:
    return {"metadata": {"encoding": _b64(b"json/plain")}, "data": _b64(json.dumps(value).encode())}


async def _codec(http: httpx.AsyncClient, url: str, op: str, payloads: list[dict[str, Any]],
                 **headers: str) -> httpx.Response:
    return await http.post(f"{url}/codec/{op}", json={"payloads": payloads}, headers={**JSON, **headers})


async def test_decode_turns_a_real_history_payload_back_into_json(stack: Stack) -> None:
    handle = await stack.submit()
    assert (await stack.wait_status(handle, SETTLED)).status == S.PAID
    history = json.loads((await handle.fetch_history()).to_json())
    first = history["events"][0]
    sealed = first["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    assert TEST_PHONE not in json.dumps(sealed)

    resp = await _codec(stack.http, stack.internal_url, "decode", [sealed, first["userMetadata"]["summary"]])

    assert resp.status_code == 200, resp.text
    decoded = resp.json()["payloads"]
    assert base64.b64decode(decoded[0]["metadata"]["encoding"]) == b"json/plain"
    workflow_input = json.loads(base64.b64decode(decoded[0]["data"]))
    assert workflow_input["request"]["receipt_id"] == handle.id.removeprefix("payout-")
    assert workflow_input["request"]["masked_msisdn"] == "+380•••••67"
    assert TEST_PHONE not in json.dumps(workflow_input)  # only the Fernet token and the masked form
    assert "+380•••••67" in json.loads(base64.b64decode(decoded[1]["data"]))


async def test_encode_then_decode_round_trips(stack: Stack) -> None:
    original = [_plain({"hello": "world"}), _plain(42)]
    encoded = await _codec(stack.http, stack.internal_url, "encode", original)
    assert encoded.status_code == 200
    sealed = encoded.json()["payloads"]
    assert {base64.b64decode(p["metadata"]["encoding"]) for p in sealed} == {b"binary/encrypted"}

    decoded = await _codec(stack.http, stack.internal_url, "decode", sealed)
    assert decoded.json()["payloads"] == original


async def test_token_cors_and_namespace_are_enforced(stack: Stack) -> None:
    settings = with_webhook(stack.settings, env="production", codec_token=TOKEN, codec_cors_origins=UI_ORIGIN + "/")
    payloads = [_plain("x")]
    async with extra_webhook(stack, settings) as urls:
        url = urls.internal
        http = stack.http
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        missing = await _codec(http, url, "decode", payloads)
        wrong = await _codec(http, url, "decode", payloads, Authorization="Bearer nope")
        cli = await _codec(http, url, "encode", payloads, **bearer)
        ui = await _codec(http, url, "decode", payloads, Origin=UI_ORIGIN, **{"X-Namespace": "default"}, **bearer)
        other_namespace = await _codec(http, url, "decode", payloads, **{"X-Namespace": "someone-else"}, **bearer)
        evil = await _codec(http, url, "decode", payloads, Origin="https://evil.example", **bearer)
        preflight = await http.options(f"{url}/codec/decode", headers={
            "Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})
        evil_preflight = await http.options(f"{url}/codec/decode", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert cli.status_code == 200 and "Access-Control-Allow-Origin" not in cli.headers
    assert ui.status_code == 200
    assert ui.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert ui.json()["payloads"] == payloads
    assert other_namespace.status_code == 403
    assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-namespace"} <= allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert evil_preflight.status_code == 403 and "Access-Control-Allow-Origin" not in evil_preflight.headers
    assert await auth_failures(stack.http, stack.internal_url, "codec", "token_mismatch") >= 1
    assert TOKEN not in (await stack.http.get(f"{stack.internal_url}/metrics")).text


async def test_a_production_codec_server_without_a_token_is_closed(stack: Stack) -> None:
    async with extra_webhook(stack, with_webhook(stack.settings, env="production")) as urls:
        url = urls.internal
        resp = await _codec(stack.http, url, "decode", [_plain("x")], Authorization="Bearer anything")
    assert resp.status_code == 403
    assert "WEBHOOK_CODEC_TOKEN" in resp.json()["error"]


async def test_bad_requests_get_clear_4xx(stack: Stack) -> None:
    foreign_key = new_codec_key("elsewhere")
    settings = stack.settings.model_copy(
        update={"crypto": stack.settings.crypto.model_copy(update={"codec_keys": _secret(foreign_key)})}
    )
    async with extra_webhook(stack, settings) as others:
        other = others.internal
        [foreign] = (await _codec(stack.http, other, "encode", [_plain("x")])).json()["payloads"]
    url, http = stack.internal_url, stack.http

    unknown_key = await _codec(http, url, "decode", [foreign])
    not_json = await http.post(f"{url}/codec/decode", content=b"{nope", headers=JSON)
    wrong_shape = await http.post(f"{url}/codec/decode", json={"payloads": "x"}, headers=JSON)
    unknown_field = await _codec(http, url, "decode", [{"metadata": {}, "bogus": "x"}])
    wrong_type = await http.post(f"{url}/codec/decode", content=b"{}", headers={"Content-Type": "text/plain"})
    too_big = await http.post(f"{url}/codec/decode", content=b"[" * (5 * 1024 * 1024), headers=JSON)

    assert unknown_key.status_code == 400 and "elsewhere" in unknown_key.json()["error"]
    assert foreign_key.split(":")[1] not in unknown_key.text
    statuses = [r.status_code for r in (not_json, wrong_shape, unknown_field, wrong_type, too_big)]
    assert statuses == [400, 400, 400, 415, 413]


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)
