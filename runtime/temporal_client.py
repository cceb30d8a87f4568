"""The one way every process connects to Temporal: same connection profile, same data converter.

The connection (address, namespace, TLS, API key) is the `temporal` CLI's profile and variables
(runtime.temporal_profile), so the CLI, the workers, the webhook and `payouts ops` share one
configuration.

The data converter is pydantic payloads, every payload encrypted by the AES-GCM codec
(`runtime.codec`, keys from `PAYOUTS_CODEC_KEYS`), and failures converted by
`runtime.failure_converter`: our own failure types and update refusals keep a short readable
message, every other failure's message and stack trace move into encoded attributes and are
encrypted too. The worker, the webhook, the CLI, replay tests and the time-skipping tests all build
it here from the same settings.
"""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConnectConfig

from runtime import telemetry
from runtime.codec import AesGcmCodec, CodecKeyError, parse_codec_keys
from runtime.failure_converter import PayoutsFailureConverter
from runtime.settings import ConfigError, CryptoSettings, Settings, TemporalSettings


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


def connect_config(temporal: TemporalSettings) -> ClientConnectConfig:
    """`Client.connect` arguments from the resolved profile (runtime.temporal_profile): address,
    namespace, API key, TLS with the certificate files read now, gRPC metadata."""
    config = temporal.connection_profile.to_client_connect_config()  # reads the TLS files (OSError)
    config["target_host"] = temporal.address
    config["namespace"] = temporal.namespace
    return config


async def connect(settings: Settings) -> Client:
    """A client for the configured Temporal, with this process's telemetry (SDK metrics, tracing).

    Refuses (ConfigError) in production when the connection would be plaintext to a Temporal that
    is not on this machine, unless TEMPORAL_ALLOW_PLAINTEXT is set."""
    settings.require("the Temporal connection", ["temporal"])
    try:
        config = connect_config(settings.temporal)
    except OSError as exc:
        raise ConfigError(f"Temporal TLS: cannot read a certificate or key file: {exc}") from None
    return await Client.connect(
        **config,
        data_converter=data_converter(settings.crypto),
        runtime=telemetry.temporal_runtime(),
        interceptors=telemetry.client_interceptors(),
    )
