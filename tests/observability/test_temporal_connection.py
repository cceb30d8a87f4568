"""The Temporal connection is the `temporal` CLI's: a TOML profile and TEMPORAL_* variables (address,
namespace, TLS with client certificate, key and server CA, API key) reach the client, a mutual-TLS
Temporal is reached with them by the service and by the CLI alike, and production refuses a
plaintext connection to a Temporal that is not on its own machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from console.tools import temporal_cli
from runtime.settings import ConfigError, Settings, TemporalSettings, load_settings
from runtime.temporal_client import connect, connect_config
from tests.stack import stack_crypto

SERVER_NAME = "temporal.payouts.test"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _issue(directory: Path, stem: str, subject: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
           *, ca: bool = False, server: bool = False) -> tuple[x509.Name, ec.EllipticCurvePrivateKey, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return name, key, cert_path, key_path


def make_pki(directory: Path) -> Pki:
    ca_name, ca_key, ca_path, _ = _issue(directory, "ca", "payouts test CA", None, ca=True)
    _, _, server_cert, server_key = _issue(directory, "server", SERVER_NAME, (ca_name, ca_key), server=True)
    _, _, client_cert, client_key = _issue(directory, "client", "payouts-worker", (ca_name, ca_key))
    return Pki(ca_path, server_cert, server_key, client_cert, client_key)


def write_profile(path: Path, pki: Pki, address: str) -> Path:
    path.write_text(
        f'[profile.prod]\naddress = "{address}"\nnamespace = "default"\n\n'
        f'[profile.prod.tls]\nclient_cert_path = "{pki.client_cert}"\nclient_key_path = "{pki.client_key}"\n'
        f'server_ca_cert_path = "{pki.ca}"\nserver_name = "{SERVER_NAME}"\n'
    )
    return path


@dataclass
class TlsFrontend:
    """Mutual TLS in front of the plaintext dev server: what a secured cluster looks like to a client."""

    address: str
    client_names: list[str]


@contextlib.asynccontextmanager
async def tls_frontend(pki: Pki, upstream: str) -> AsyncIterator[TlsFrontend]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
    context.set_alpn_protocols(["h2"])
    host, port = upstream.rsplit(":", 1)
    seen: list[str] = []
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        subject = dict(item[0] for item in writer.get_extra_info("peercert")["subject"])
        seen.append(subject["commonName"])
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        for task in (asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield TlsFrontend(f"127.0.0.1:{server.sockets[0].getsockname()[1]}", seen)
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()


def production(temporal: TemporalSettings) -> Settings:
    return Settings(env="production", temporal=temporal, crypto=stack_crypto())


def test_a_toml_profile_with_tls_builds_the_connect_config(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    profile = write_profile(tmp_path / "temporal.toml", pki, "temporal.internal:7233")

    config = connect_config(TemporalSettings(profile="prod", config_file=profile))

    assert config["target_host"] == "temporal.internal:7233"
    assert config["namespace"] == "default"
    tls = config["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.domain == SERVER_NAME
    assert tls.server_root_ca_cert == pki.ca.read_bytes()
    assert tls.client_cert == pki.client_cert.read_bytes()
    assert tls.client_private_key == pki.client_key.read_bytes()


def test_variables_override_the_profile_and_an_api_key_turns_tls_on(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    profile = write_profile(tmp_path / "temporal.toml", pki, "temporal.internal:7233")
    overridden = TemporalSettings(profile="prod", config_file=profile, address="10.1.2.3:7233", namespace="payouts")
    config = connect_config(overridden)
    assert (config["target_host"], config["namespace"]) == ("10.1.2.3:7233", "payouts")
    assert overridden.address == "10.1.2.3:7233"  # what the logs and the codec server see

    cloud = connect_config(TemporalSettings(address="payouts.a1b2c.tmprl.cloud:7233", api_key=SecretStr("k-1")))
    assert cloud["api_key"] == "k-1"
    assert cloud["tls"] is True

    plain = connect_config(TemporalSettings(address="127.0.0.1:7233"))
    assert "tls" not in plain and "api_key" not in plain


async def test_service_and_cli_reach_a_mutual_tls_temporal_with_the_same_profile(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    async with tls_frontend(pki, dev_env.client.service_client.config.target_host) as frontend:
        profile = write_profile(tmp_path / "temporal.toml", pki, frontend.address)
        settings = production(TemporalSettings(profile="prod", config_file=profile))
        settings.require("payouts worker", ["temporal"])  # TLS on: nothing to refuse

        client = await connect(settings)
        assert await client.service_client.check_health()
        described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
        assert described.namespace_info.name == "default"
        assert "payouts-worker" in frontend.client_names  # the client certificate was presented

        # The CLI, with the same file and variables.
        env = {**os.environ, "TEMPORAL_CONFIG_FILE": str(profile), "TEMPORAL_PROFILE": "prod"}
        cli = await asyncio.to_thread(
            subprocess.run,
            [temporal_cli(), "operator", "namespace", "describe", "--namespace", "default", "-o", "json"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert frontend.client_names.count("payouts-worker") >= 2

        # Without the client certificate the frontend refuses: TLS really is in the way.
        no_cert = tmp_path / "no-cert.toml"
        no_cert.write_text(
            f'[profile.prod]\naddress = "{frontend.address}"\n[profile.prod.tls]\n'
            f'server_ca_cert_path = "{pki.ca}"\nserver_name = "{SERVER_NAME}"\n'
        )
        with pytest.raises(RuntimeError):
            await connect(production(TemporalSettings(profile="prod", config_file=no_cert)))


async def test_production_refuses_plaintext_to_a_remote_temporal() -> None:
    settings = production(TemporalSettings(address="temporal.internal:7233"))
    with pytest.raises(ConfigError) as refused:
        await connect(settings)
    message = str(refused.value)
    assert "Temporal at temporal.internal:7233 is not on this machine" in message
    assert "TEMPORAL_TLS=true" in message and "TEMPORAL_ALLOW_PLAINTEXT=true" in message

    # Explicitly allowed, a local address, or dev mode: nothing to refuse.
    production(TemporalSettings(address="temporal.internal:7233", allow_plaintext=True)).require("x", ["temporal"])
    production(TemporalSettings(address="127.0.0.1:7233")).require("x", ["temporal"])
    production(TemporalSettings(address="[::1]:7233")).require("x", ["temporal"])
    Settings(env="dev", temporal=TemporalSettings(address="temporal.internal:7233")).require("x", ["temporal"])


def test_the_worker_command_names_the_refusal_with_the_other_problems(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "PAYOUTS_", "PORTMONE_"))}
    env.update({"TEMPORAL_ADDRESS": "temporal.internal:7233", "PAYOUTS_ENV": "production"})
    result = subprocess.run(
        [sys.executable, "-m", "console.cli", "worker"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "payouts worker cannot start in production" in result.stderr
    assert "PORTMONE_LOGIN is not set" in result.stderr
    assert "Temporal at temporal.internal:7233 is not on this machine" in result.stderr


def test_a_missing_profile_is_a_readable_settings_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(write_profile(tmp_path / "t.toml", make_pki(tmp_path), "x:1")))
    monkeypatch.setenv("TEMPORAL_PROFILE", "staging")
    with pytest.raises(ConfigError, match=r"Temporal profile 'staging'.*not found"):
        load_settings()
