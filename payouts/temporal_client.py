"""The one way every process connects to Temporal: same namespace, same data converter.

The data converter is pydantic payloads, every payload encrypted by the AES-GCM codec
(`payouts.codec`, keys from `PAYOUTS_CODEC_KEYS`), and failures converted by
`payouts.failure_converter`: our own failure types and update refusals keep a short readable
message, every other failure's message and stack trace move into encoded attributes and are
encrypted too. The worker, the webhook, the CLI, replay tests and the time-skipping tests all build
it here from the same settings.
"""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from payouts.codec import AesGcmCodec, CodecKeyError, parse_codec_keys
from payouts.failure_converter import PayoutsFailureConverter
from payouts.settings import ConfigError, CryptoSettings, Settings


def payload_codec(crypto: CryptoSettings) -> AesGcmCodec:
    """The codec for the configured keys; a ConfigError names what is wrong with them."""
    try:
        keys = parse_codec_keys(crypto.codec_keys.get_secret_value())
    except CodecKeyError as exc:
        raise ConfigError(f"PAYOUTS_CODEC_KEYS: {exc}") from None
    if not keys:
        raise ConfigError("PAYOUTS_CODEC_KEYS is not set (id:base64key,... newest first)")
    return AesGcmCodec(keys)


def data_converter(crypto: CryptoSettings) -> DataConverter:
    """Pydantic payloads, encrypted by the payload codec; failures readable only when ours and safe."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=payload_codec(crypto),
        failure_converter_class=PayoutsFailureConverter,
    )


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal.address,
        namespace=settings.temporal.namespace,
        data_converter=data_converter(settings.crypto),
    )
