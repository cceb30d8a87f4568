"""The Temporal payload codec: AES-256-GCM over every payload, with key ids for rotation.

Each encoded payload is a new payload whose data is `nonce (12 bytes) || ciphertext+tag` of the
serialised original payload and whose metadata names the key:

    encoding            binary/encrypted
    encryption-cipher   AES-256-GCM
    encryption-key-id   <key id>

The key id is also the associated data, so a payload cannot be moved under another key's id.
The first configured key encrypts; any configured key decrypts. A payload naming a key id that is
not configured fails with `CodecKeyError` naming the id (never the key). Payloads that are not
`binary/encrypted` pass through decoding unchanged (histories from before the codec).

Keys come from `PAYOUTS_CODEC_KEYS` as `id:base64key,id:base64key` (newest first, 32-byte keys).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
META_ENCODING = "encoding"
META_CIPHER = "encryption-cipher"
META_KEY_ID = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_AAD_PREFIX = b"receipt-payouts/codec/v1:"


class CodecError(ValueError):
    """A payload that cannot be encrypted or decrypted with the configured keys."""


class CodecKeyError(CodecError):
    """Codec keys that are missing, malformed, or do not include a payload's key id."""


@dataclass(frozen=True, slots=True)
class CodecKey:
    key_id: str
    key: bytes

    def __repr__(self) -> str:
        return f"CodecKey(key_id={self.key_id!r}, key=***)"


def parse_codec_keys(spec: str) -> list[CodecKey]:
    """`id:base64key,id:base64key` -> keys, newest first. Raises CodecKeyError naming the bad entry."""
    keys: list[CodecKey] = []
    for position, entry in enumerate((e.strip() for e in spec.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID.match(key_id):
            raise CodecKeyError(f"codec key entry {position} must look like id:base64key (id: letters, digits, _.-)")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CodecKeyError(f"codec key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise CodecKeyError(f"codec key {key_id!r} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
        if any(k.key_id == key_id for k in keys):
            raise CodecKeyError(f"codec key id {key_id!r} appears twice")
        keys.append(CodecKey(key_id, key))
    return keys


def new_codec_key(key_id: str) -> str:
    """A fresh `id:base64key` entry (for docs and rotation)."""
    if not _KEY_ID.match(key_id):
        raise CodecKeyError("key id: 1-32 letters, digits, _.-")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode('ascii')}"


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode("ascii")


class AesGcmCodec(PayloadCodec):
    """Encrypt with the newest key, decrypt with any configured key."""

    def __init__(self, keys: Sequence[CodecKey]) -> None:
        if not keys:
            raise CodecKeyError("at least one codec key is required (PAYOUTS_CODEC_KEYS)")
        self._current = keys[0]
        self._ciphers = {k.key_id: AESGCM(k.key) for k in keys}

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._current.key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), _aad(key_id))
        return Payload(
            metadata={META_ENCODING: ENCODING, META_CIPHER: CIPHER, META_KEY_ID: key_id.encode("ascii")},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get(META_ENCODING) != ENCODING:
            return payload
        raw_id = payload.metadata.get(META_KEY_ID)
        if not raw_id:
            raise CodecError("encrypted payload carries no encryption-key-id")
        key_id = raw_id.decode("ascii", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(self._ciphers)
            raise CodecKeyError(
                f"payload was encrypted with codec key id {key_id[:32]!r}, which is not configured "
                f"(configured: {known}); add that key to PAYOUTS_CODEC_KEYS"
            )
        data = payload.data
        if len(data) < NONCE_BYTES + 16:
            raise CodecError("encrypted payload is too short")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(key_id))
        except InvalidTag:
            raise CodecError(f"encrypted payload failed authentication under key id {key_id!r}") from None
        original = Payload()
        original.ParseFromString(plain)
        return original
