"""Where Temporal is and how to reach it: the `temporal` CLI's own configuration, read by
`temporalio.envconfig`.

A profile comes from the TOML file (`TEMPORAL_CONFIG_FILE`, else the CLI's default location) under
its name (`TEMPORAL_PROFILE`, else `default`); the `TEMPORAL_*` variables the CLI reads (address,
namespace, API key, TLS with client certificate, key and server CA, server name, gRPC metadata)
override it. So one configuration serves the CLI, the workers, the webhook and `payouts ops`.
Nothing here reads a certificate or logs the API key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from temporalio.envconfig import ClientConfigProfile

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


class ProfileError(ValueError):
    """The profile cannot be loaded (a named profile that is not in the file, a file that is not TOML)."""


def load_profile(name: str, config_file: Path | None, env: Mapping[str, str]) -> ClientConfigProfile:
    """The named profile (or `default`) of the file, with `env`'s `TEMPORAL_*` values applied over it."""
    try:
        return ClientConfigProfile.load(
            name or None,
            config_source=config_file,
            override_env_vars=dict(env),
        )
    except Exception as exc:  # the bridge raises its own ConfigError type, OSError for an unreadable file
        where = f" of {config_file}" if config_file else ""
        raise ProfileError(f"Temporal profile {name or 'default'!r}{where}: {exc}") from None


def tls_enabled(profile: ClientConfigProfile) -> bool:
    """Whether the connection is encrypted: a TLS section that is not disabled, or an API key (which
    envconfig always sends over TLS unless TLS is disabled outright)."""
    if profile.tls is not None and profile.tls.disabled is True:
        return False
    return profile.tls is not None or bool(profile.api_key)


def is_local(address: str) -> bool:
    """True for a loopback address or `localhost` (a plaintext connection never leaves the machine)."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    host = host.strip("[]").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TlsFile:
    what: str
    path: Path


def tls_files(profile: ClientConfigProfile) -> list[TlsFile]:
    """The certificate and key files the profile names (data given inline is not a file)."""
    tls = profile.tls
    if tls is None:
        return []
    named = (
        ("client certificate", tls.client_cert),
        ("client key", tls.client_private_key),
        ("server CA certificate", tls.server_root_ca_cert),
    )
    return [TlsFile(what, source) for what, source in named if isinstance(source, Path)]


def plaintext_refusal(address: str) -> str:
    return (
        f"Temporal at {address} is not on this machine and the connection would not be encrypted: set "
        "TEMPORAL_TLS=true (with TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH for mutual TLS, "
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH for a private CA), or TEMPORAL_API_KEY, or name a profile with TLS "
        "(TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE); TEMPORAL_ALLOW_PLAINTEXT=true accepts an unencrypted "
        "connection on a network you trust"
    )
