"""The Temporal payload codec: AES-GCM with key ids, rotation, clear errors, and what a real
payout's history looks like with it on."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from payouts.status import PayoutStatus as S
from runtime import devdefaults
from runtime.codec import (
    ENCODING,
    META_KEY_ID,
    AesGcmCodec,
    CodecError,
    CodecKeyError,
    new_codec_key,
    parse_codec_keys,
)
from runtime.settings import ConfigError, CryptoSettings, Settings
from runtime.temporal_client import data_converter
from tests.callbacks import SETTLED
from tests.stack import TEST_PHONE, Stack
from tests.stack_checks import history_payloads, sdk_marker_bookkeeping

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"msisdn": TEST_PHONE}).encode())


def _codec(*entries: str) -> AesGcmCodec:
    return AesGcmCodec(parse_codec_keys(",".join(entries)))


async def test_encode_hides_the_data_and_names_the_key() -> None:
    codec = _codec(devdefaults.DEV_CODEC_KEYS)
    [sealed] = await codec.encode([PLAIN])

    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[META_KEY_ID] == b"dev1"
    assert TEST_PHONE.encode() not in sealed.SerializeToString()
    assert await codec.decode([sealed]) == [PLAIN]
    [again] = await codec.encode([PLAIN])
    assert again.data != sealed.data  # a fresh nonce every time


async def test_rotation_new_key_encrypts_every_configured_key_decrypts() -> None:
    old_entry, new_entry = new_codec_key("k2025"), new_codec_key("k2026")
    before = _codec(old_entry)
    after = _codec(new_entry, old_entry)  # the new key put first
    [old_sealed] = await before.encode([PLAIN])

    assert await after.decode([old_sealed]) == [PLAIN]
    [new_sealed] = await after.encode([PLAIN])
    assert new_sealed.metadata[META_KEY_ID] == b"k2026"
    with pytest.raises(CodecKeyError) as err:
        await before.decode([new_sealed])  # a process that was not given the new key yet
    assert "k2026" in str(err.value) and "PAYOUTS_CODEC_KEYS" in str(err.value)
    assert new_entry.split(":")[1] not in str(err.value)


async def test_tampering_is_detected() -> None:
    a, b = new_codec_key("a"), new_codec_key("b")
    codec = _codec(a, b)
    [sealed] = await codec.encode([PLAIN])

    flipped = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(CodecError, match="authentication"):
        await codec.decode([flipped])
    relabelled = Payload(metadata={**sealed.metadata, META_KEY_ID: b"b"}, data=sealed.data)
    with pytest.raises(CodecError, match="authentication"):
        await codec.decode([relabelled])
    unlabelled = Payload(metadata={"encoding": ENCODING}, data=sealed.data)
    with pytest.raises(CodecError, match="key-id"):
        await codec.decode([unlabelled])


async def test_payloads_from_before_the_codec_pass_through_decoding() -> None:
    assert await _codec(devdefaults.DEV_CODEC_KEYS).decode([PLAIN]) == [PLAIN]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nokeyid", "id:base64key"),
        ("bad id!:" + base64.b64encode(b"k" * 32).decode(), "id:base64key"),
        ("k1:not base64!", "not valid base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "32 bytes"),
        (f"k1:{base64.b64encode(b'k' * 32).decode()},k1:{base64.b64encode(b'j' * 32).decode()}", "twice"),
    ],
)
def test_bad_key_specs_are_named(spec: str, message: str) -> None:
    with pytest.raises(CodecKeyError, match=message) as err:
        parse_codec_keys(spec)
    assert base64.b64encode(b"k" * 32).decode() not in str(err.value)


def test_the_converter_and_a_production_start_need_codec_keys() -> None:
    with pytest.raises(ConfigError, match="PAYOUTS_CODEC_KEYS"):
        data_converter(CryptoSettings())
    settings = Settings(env="production", crypto=CryptoSettings(codec_keys=SecretStr("k1:tooshort")))
    with pytest.raises(ConfigError) as err:
        settings.require("payouts worker", ["crypto"])
    assert "PAYOUTS_CODEC_KEYS" in str(err.value)


async def test_a_real_payout_history_is_ciphertext_and_decodes_after_rotation(stack: Stack) -> None:
    handle = await stack.submit()
    assert (await stack.wait_status(handle, SETTLED)).status == S.PAID
    history = json.loads((await handle.fetch_history()).to_json())

    payloads = history_payloads(history)
    encrypted = [(p, x) for p, x in payloads if "searchAttributes" not in p and not sdk_marker_bookkeeping(p, x)]
    assert len(encrypted) > 10
    for where, payload in encrypted:
        assert base64.b64decode(payload["metadata"]["encoding"]) == ENCODING, where
    # Search attributes stay readable (the visibility store indexes them) and hold no personal data.
    clear = [p for p, x in payloads if base64.b64decode(x["metadata"]["encoding"]) != ENCODING]
    assert all("searchAttributes" in p or sdk_marker_bookkeeping(p, x) for p, x in payloads if p in clear)

    rotated = _codec(new_codec_key("next"), devdefaults.DEV_CODEC_KEYS)
    start = history["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    sealed = Payload(
        metadata={k: base64.b64decode(v) for k, v in start["metadata"].items()}, data=base64.b64decode(start["data"])
    )
    [plain] = await rotated.decode([sealed])
    assert json.loads(plain.data)["request"]["receipt_id"] == handle.id.removeprefix("payout-")
    with pytest.raises(CodecKeyError, match="dev1"):
        await _codec(new_codec_key("next")).decode([sealed])
