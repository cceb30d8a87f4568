"""Settings from the environment (and `.env`), one section per prefix.

`PAYOUTS_ENV=dev` (what `payouts dev` sets) accepts the embedded dev defaults of
`runtime.devdefaults`; anything else is production, where `require(...)` refuses to start a
component that lacks what it needs and names every missing or invalid variable at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.envconfig import ClientConfigProfile

from runtime import temporal_profile as tp
from runtime.listsettings import IPNetwork, parse_fingerprints, parse_networks, split_list

DEFAULT_PORTMONE_API_BASE = "https://direct.portmone.com.ua/api/directcash/"
# Room inside one bills.create attempt for the ledger writes around the Portmone call (the
# `prepared` attempt before it, the attempt's ending and the archive after it):
# PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS must exceed the call's total budget plus this.
BILL_ATTEMPT_LEDGER_MARGIN_SECONDS = 10.0


class ConfigError(RuntimeError):
    """Settings that do not allow a component to start; the message names each variable."""


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore", case_sensitive=False)


class PortmoneSettings(BaseSettings):
    model_config = _config("PORTMONE_")

    login: str = ""
    password: SecretStr = SecretStr("")
    cert_path: Path | None = None
    key_path: Path | None = None
    api_base: str = DEFAULT_PORTMONE_API_BASE
    version: Literal[1, 2] = 2
    lang: Literal["uk", "ru", "en"] | None = None
    payee_id: str = ""
    # JSON object: operator prefix (e.g. "38067") -> payeeId. A guess: numbers are portable.
    payee_prefixes: dict[str, str] = Field(default_factory=dict)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    write_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(default=20.0, gt=0)
    max_response_bytes: int = Field(default=256 * 1024, gt=0)

    @property
    def total_timeout_seconds(self) -> float:
        """The most one Portmone call may take in all: connect + write + read timeout."""
        return self.connect_timeout_seconds + self.write_timeout_seconds + self.read_timeout_seconds


class LedgerSettings(BaseSettings):
    model_config = _config("LEDGER_")

    url: str = "sqlite+aiosqlite:///.data/ledger.db"
    user_daily_limit: int = Field(default=3, ge=1, description="payouts per user per day")
    daily_budget_kopecks: int = Field(default=10_000_000, ge=0)
    max_payout_kopecks: int = Field(default=100_000, ge=1)
    archive_retention_days: int = Field(default=90, ge=90)


# Reminders add about a dozen history events each; below this interval a waiting payout would fill its
# history (and spam the operators' chat) faster than anyone can act.
MIN_MANUAL_REMINDER_SECONDS = 300


class PayoutSettings(BaseSettings):
    """Payout timing. The webhook copies these into each workflow's input at intake (PayoutPolicy):
    a payout keeps the values it started with, and a worker never reads them."""

    model_config = _config("PAYOUT_")

    callback_timeout_seconds: int = Field(default=3600, ge=1)
    max_bill_rounds: int = Field(default=3, ge=1)
    retry_backoff_seconds: int = Field(default=300, ge=1)
    manual_reminder_seconds: int = Field(default=4 * 3600, ge=MIN_MANUAL_REMINDER_SECONDS)
    reminders_per_run: int = Field(default=50, ge=1)
    bill_attempt_timeout_seconds: int = Field(default=90, ge=1)
    eligibility_days: int = Field(default=30, ge=1)


class TemporalSettings(BaseSettings):
    """The Temporal connection, read as the `temporal` CLI reads it (runtime.temporal_profile): the
    profile of its TOML file, with these variables over it. Address and namespace are resolved at
    load: the variable, else the profile, else `localhost:7233` and `default`."""

    model_config = _config("TEMPORAL_")

    address: str = ""
    namespace: str = ""
    task_queue: str = "payouts"
    profile: str = ""
    config_file: Path | None = None
    api_key: SecretStr = SecretStr("")
    tls: bool | None = None
    tls_client_cert_path: Path | None = None
    tls_client_key_path: Path | None = None
    tls_server_ca_cert_path: Path | None = None
    tls_server_name: str = ""
    # Ours, not the CLI's: a production process refuses a plaintext connection to a Temporal that is
    # not on its own machine unless this is set.
    allow_plaintext: bool = False
    _profile: ClientConfigProfile = PrivateAttr(default_factory=ClientConfigProfile)

    @model_validator(mode="after")
    def _resolve_profile(self) -> TemporalSettings:
        self._profile = tp.load_profile(self.profile, self.config_file, self._cli_environment())
        self.address = self._profile.address or tp.DEFAULT_ADDRESS
        self.namespace = self._profile.namespace or tp.DEFAULT_NAMESPACE
        return self

    def _cli_environment(self) -> dict[str, str]:
        """The CLI's variables as envconfig reads them: the process's `TEMPORAL_*` (gRPC metadata,
        inline certificate data), then every value set here (also from `.env`) over them."""
        env = {k: v for k, v in os.environ.items() if k.startswith("TEMPORAL_")}
        env.pop("TEMPORAL_PROFILE", None)  # passed by name, never read twice
        env.pop("TEMPORAL_CONFIG_FILE", None)
        values: dict[str, str | Path | bool | None] = {
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": self.namespace,
            "TEMPORAL_API_KEY": self.api_key.get_secret_value(),
            "TEMPORAL_TLS": self.tls,
            "TEMPORAL_TLS_CLIENT_CERT_PATH": self.tls_client_cert_path,
            "TEMPORAL_TLS_CLIENT_KEY_PATH": self.tls_client_key_path,
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": self.tls_server_ca_cert_path,
            "TEMPORAL_TLS_SERVER_NAME": self.tls_server_name,
        }
        for name, value in values.items():
            if isinstance(value, bool):
                env[name] = "true" if value else "false"
            elif value:
                env[name] = str(value)
        return env

    @property
    def connection_profile(self) -> ClientConfigProfile:
        """The resolved profile (runtime.temporal_client turns it into connect arguments)."""
        return self._profile


class CryptoSettings(BaseSettings):
    model_config = _config("PAYOUTS_")

    # Comma-separated Fernet keys, newest first: the first encrypts, all decrypt.
    fernet_keys: SecretStr = SecretStr("")
    hmac_key: SecretStr = SecretStr("")
    # Temporal payload codec keys (runtime.codec): `id:base64key,...`, newest first: the first
    # encrypts, all decrypt. 32-byte keys (AES-256-GCM).
    codec_keys: SecretStr = SecretStr("")

    def fernet_key_list(self) -> list[str]:
        return [k.strip() for k in self.fernet_keys.get_secret_value().split(",") if k.strip()]


class TelegramSettings(BaseSettings):
    model_config = _config("TELEGRAM_")

    bot_token: SecretStr = SecretStr("")
    api_base: str = "https://api.telegram.org"
    default_language: Literal["uk", "en"] = "uk"
    timeout_seconds: float = Field(default=5.0, gt=0)
    operators_chat_id: str | None = None


class TelecomSettings(BaseSettings):
    model_config = _config("TELECOM_")

    api_url: str | None = None
    api_token: SecretStr = SecretStr("")
    timeout_seconds: float = Field(default=10.0, gt=0)


# Asymmetric signatures only: no `none`, and no HMAC (a public key must never be usable as a secret).
_TOKEN_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class WebhookSettings(BaseSettings):
    model_config = _config("WEBHOOK_")

    # The public listener: Portmone's callbacks, and nothing else.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # The internal listener: intake, the codec, health, metrics (never routed from the internet).
    internal_host: str = "127.0.0.1"
    internal_port: int = Field(default=8081, ge=0, le=65535)
    intake_token: SecretStr = SecretStr("")
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # Slow or oversized requests (docs/security.md 6.2): a body must arrive whole within this many
    # seconds (else 408, connection closed); request line and each header at most this many bytes,
    # at most this many headers (else 400, before any handler runs).
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_header_bytes: int = Field(default=8 * 1024, ge=1024, le=64 * 1024)
    max_headers: int = Field(default=64, ge=16, le=1024)
    # --- request authentication (docs/security.md) ---
    # Intake may also be signed (runtime.signing): comma-separated secrets, newest first.
    intake_hmac_secrets: SecretStr = SecretStr("")
    # Portmone callbacks: every configured mode must pass; production needs at least one mode.
    callback_hmac_secrets: SecretStr = SecretStr("")
    signature_window_seconds: int = Field(default=300, ge=1, le=3600)
    callback_allowed_cidrs: str = ""
    # X-Forwarded-For is believed only when the peer is one of these (comma-separated CIDRs).
    trusted_proxies: str = ""
    # HTTPS on the webhook's own listener; with client fingerprints, mutual TLS for callbacks.
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    tls_client_ca_path: Path | None = None
    tls_client_fingerprints: str = ""
    # The payload codec server for the Web UI (`/codec/encode`, `/codec/decode`): a static bearer token
    # (the CLI) and/or operators' OIDC access tokens that the Web UI passes on, checked against the
    # issuer's published keys (docs/security.md §4).
    codec_token: SecretStr = SecretStr("")
    codec_oidc_issuer: str = ""  # the tokens' `iss`, exactly as the identity provider writes it
    codec_oidc_audience: str = ""  # their `aud`: this codec server (or the Web UI's client) at the provider
    codec_oidc_jwks_url: str = ""  # the provider's key set (`jwks_uri` of its openid-configuration)
    # The claim that names operators, and the value it must hold (a string, or a list containing it).
    codec_oidc_operator_claim: str = Field(default="groups", min_length=1)
    codec_oidc_operator_value: str = Field(default="payouts-operators", min_length=1)
    codec_oidc_algorithms: str = "RS256,ES256"
    codec_cors_origins: str = ""
    codec_max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # --- callback redelivery (webhook.redelivery) ---
    # How often the sweep re-signals stored callbacks whose workflow was never told, and how old a
    # stored callback must be before the sweep takes it (the live path goes first).
    redeliver_interval_seconds: float = Field(default=15.0, gt=0)
    redeliver_after_seconds: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _two_listeners(self) -> WebhookSettings:
        if self.port and self.port == self.internal_port:
            raise ValueError(
                f"WEBHOOK_PORT and WEBHOOK_INTERNAL_PORT are both {self.port}: the public listener (Portmone's "
                "callbacks) and the internal one (intake, codec, health, metrics) need a port each"
            )
        return self

    @model_validator(mode="after")
    def _oidc_whole(self) -> WebhookSettings:
        given = {
            "WEBHOOK_CODEC_OIDC_ISSUER": self.codec_oidc_issuer,
            "WEBHOOK_CODEC_OIDC_AUDIENCE": self.codec_oidc_audience,
            "WEBHOOK_CODEC_OIDC_JWKS_URL": self.codec_oidc_jwks_url,
        }
        missing = [name for name, value in given.items() if not value]
        if 0 < len(missing) < len(given):
            raise ValueError(f"operators' tokens for the codec need all three of {', '.join(given)}: "
                             f"{', '.join(missing)} is not set")
        if self.codec_oidc_jwks_url and not self.codec_oidc_jwks_url.startswith(("https://", "http://")):
            raise ValueError("WEBHOOK_CODEC_OIDC_JWKS_URL must be an http(s) URL")
        unsupported = set(self.codec_oidc_algorithm_list()) - _TOKEN_ALGORITHMS
        if unsupported:
            raise ValueError(f"WEBHOOK_CODEC_OIDC_ALGORITHMS: {', '.join(sorted(unsupported))} not accepted "
                             f"(use {', '.join(sorted(_TOKEN_ALGORITHMS))}: the provider's keys sign, never a secret)")
        return self

    def codec_oidc_enabled(self) -> bool:
        return bool(self.codec_oidc_issuer)

    def codec_oidc_algorithm_list(self) -> list[str]:
        return split_list(self.codec_oidc_algorithms)

    @field_validator("callback_allowed_cidrs", "trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("tls_client_fingerprints")
    @classmethod
    def _fingerprints(cls, value: str) -> str:
        parse_fingerprints(value)
        return value

    def callback_secret_list(self) -> list[str]:
        return split_list(self.callback_hmac_secrets.get_secret_value())

    def intake_secret_list(self) -> list[str]:
        return split_list(self.intake_hmac_secrets.get_secret_value())

    def allowed_networks(self) -> list[IPNetwork]:
        return parse_networks(self.callback_allowed_cidrs)

    def trusted_proxy_networks(self) -> list[IPNetwork]:
        return parse_networks(self.trusted_proxies)

    def client_fingerprints(self) -> frozenset[str]:
        return parse_fingerprints(self.tls_client_fingerprints)

    def cors_origins(self) -> list[str]:
        return [o.rstrip("/") for o in split_list(self.codec_cors_origins)]


class ReconcileSettings(BaseSettings):
    """The daily reconciliation (docs/runbook.md, "Reconciliation")."""

    model_config = _config("RECONCILE_")

    # A bill counts as overdue after PAYOUT_CALLBACK_TIMEOUT_SECONDS plus this grace.
    sla_grace_seconds: int = Field(default=900, ge=0)
    # Closed payouts are compared with their workflows for this many days after their last change.
    active_days: int = Field(default=2, ge=1)


class WorkerSettings(BaseSettings):
    model_config = _config("WORKER_")

    # The worker's own HTTP server: `/metrics` (when TELEMETRY_METRICS_EXPORTERS has prometheus).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    # How often the worker reads the manual-review queue's size and oldest age from the ledger.
    ledger_gauges_interval_seconds: float = Field(default=30.0, gt=0)
    # --- tuning, per worker process (docs/performance.md has the measured figures) ---
    # Activities and local activities (the ledger steps) in flight at once, on each task queue.
    max_concurrent_activities: int = Field(default=100, ge=1)
    max_concurrent_local_activities: int = Field(default=100, ge=1)
    max_concurrent_workflow_tasks: int = Field(default=100, ge=2)
    # The sticky cache: payout workflows kept in memory between tasks, about 0.09 MiB each beside a
    # worker's ~240 MiB. A payout that drops out of it is replayed from its history on its next task
    # (more CPU): 250 measured 263 MiB a worker with 10,000 payouts waiting (docs/performance.md).
    max_cached_workflows: int = Field(default=250, ge=0)
    # bills.create calls started per second, across every worker of the deployment: Temporal holds
    # the cap on the Portmone task queue, not per process.
    portmone_requests_per_second: float = Field(default=10.0, gt=0)


MetricsExporter = Literal["prometheus", "otlp"]
_METRICS_EXPORTERS: frozenset[str] = frozenset({"prometheus", "otlp"})


class TelemetrySettings(BaseSettings):
    """Metrics, traces and log lines (docs/observability.md)."""

    model_config = _config("TELEMETRY_")

    # Comma-separated: `prometheus` (/metrics on the webhook and the worker), `otlp` (pushed), both, or none.
    metrics_exporters: str = "prometheus"
    traces_exporter: Literal["none", "console", "otlp"] = "none"
    # OTLP over HTTP: the collector's base URL (`/v1/metrics` and `/v1/traces` are appended).
    otlp_endpoint: str = "http://localhost:4318"
    # `key=value,key=value` headers sent with every OTLP export (a collector's API key, say).
    otlp_headers: SecretStr = SecretStr("")
    otlp_metrics_interval_seconds: float = Field(default=60.0, gt=0)
    # `service.name` of every metric and span; default: `payouts-<command>` (payouts-worker, payouts-webhook).
    service_name: str = ""
    log_format: Literal["text", "json"] = "text"

    @field_validator("metrics_exporters")
    @classmethod
    def _exporters(cls, value: str) -> str:
        unknown = [name for name in split_list(value.lower()) if name not in _METRICS_EXPORTERS and name != "none"]
        if unknown:
            raise ValueError(f"unknown metrics exporter(s) {', '.join(unknown)}: use prometheus, otlp or none")
        return value

    def metrics_exporter_set(self) -> frozenset[str]:
        return frozenset(split_list(self.metrics_exporters.lower())) & _METRICS_EXPORTERS

    @property
    def prometheus(self) -> bool:
        return "prometheus" in self.metrics_exporter_set()

    def otlp_header_map(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in split_list(self.otlp_headers.get_secret_value()))
        return {key.strip(): value.strip() for key, _, value in pairs if key.strip()}


class RabbitSettings(BaseSettings):
    """The bot's RabbitMQ (docs/queue.md): `receipt.accepted` in, `bonus.events` out."""

    model_config = _config("RABBIT_")

    # amqp://user:password@host:port/vhost; `payouts dev` uses the local broker's guest account.
    url: SecretStr = SecretStr("")
    intake_queue: str = Field(default="receipt.accepted", min_length=1, max_length=200)
    # Messages that cannot be processed, with the reason in the `x-payouts-reason` header.
    dead_letter_queue: str = Field(default="receipt.accepted.dead", min_length=1, max_length=200)
    # Transient failures wait here `retry_delay_seconds` (the queue's message TTL), then return to the
    # intake queue. The TTL is part of the queue's declaration: a new delay needs a new queue name.
    retry_queue: str = Field(default="receipt.accepted.retry", min_length=1, max_length=200)
    retry_delay_seconds: float = Field(default=30.0, gt=0, le=24 * 3600)
    # A message whose handling raised (a bug of ours, not a Temporal outage) goes round the delay
    # queue; on this many failures it is dead-lettered as `handling_failed`.
    max_handling_failures: int = Field(default=5, ge=1, le=1000)
    # The intake queue (a quorum queue) dead-letters a message the broker delivered this many times
    # more without an acknowledgement (the consumer died on it, whatever the cause). Part of the
    # queue's declaration: a new value needs a new RABBIT_INTAKE_QUEUE name (docs/queue.md).
    delivery_limit: int = Field(default=10, ge=1, le=1000)
    prefetch: int = Field(default=16, ge=1, le=1000)
    max_message_bytes: int = Field(default=64 * 1024, gt=0)
    # Reconnecting after a lost broker: the wait doubles from the first value up to the second.
    reconnect_min_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    # A publish (dead letter, delayed retry, payout event) not confirmed by the broker in time fails.
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # `payouts consumer`'s own HTTP server: /healthz, /readyz and /metrics (0 picks a free port; in
    # `payouts dev` the consumer runs inside the dev process and the webhook serves the metrics).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9465, ge=0, le=65535)

    @model_validator(mode="after")
    def _distinct_queues(self) -> RabbitSettings:
        names = [self.intake_queue, self.dead_letter_queue, self.retry_queue]
        if len(set(names)) != len(names):
            raise ValueError("RABBIT_INTAKE_QUEUE, RABBIT_DEAD_LETTER_QUEUE and RABBIT_RETRY_QUEUE must differ")
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError("RABBIT_RECONNECT_MAX_SECONDS must not be below RABBIT_RECONNECT_MIN_SECONDS")
        return self


class EventsSettings(BaseSettings):
    """Where payout events go (payouts.events): the bot's `bonus.events` queue, and who tells the user."""

    model_config = _config("EVENTS_")

    bonus_queue_enabled: bool = False
    bonus_queue: str = Field(default="bonus.events", min_length=1, max_length=200)
    # `telegram`: the service messages the user itself (Telegram Bot API). `bonus_events`: it sends
    # the user nothing, and the bot's gateway tells the shopper from the `bonus.events` queue.
    user_channel: Literal["telegram", "bonus_events"] = "telegram"

    @model_validator(mode="after")
    def _user_hears_something(self) -> EventsSettings:
        if self.user_channel == "bonus_events" and not self.bonus_queue_enabled:
            raise ValueError(
                "EVENTS_USER_CHANNEL=bonus_events needs EVENTS_BONUS_QUEUE_ENABLED=true (the user would hear nothing)"
            )
        return self


class OutboxSettings(BaseSettings):
    """The relay in every worker that delivers payout events (user messages, analytics) from the ledger."""

    model_config = _config("OUTBOX_")

    relay_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    batch_size: int = Field(default=50, ge=1, le=1000)
    # A claimed batch is the relay's for this long; it hands back what it has not tried by half of it.
    lease_seconds: float = Field(default=60.0, ge=5)
    retry_first_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)


class SandboxSettings(BaseSettings):
    model_config = _config("SANDBOX_")

    host: str = "127.0.0.1"
    port: int = Field(default=8099, ge=0, le=65535)
    callback_url: str | None = None
    callback_delay_seconds: float = Field(default=0.5, ge=0)
    # Seeds every random choice of the sandbox (fault rolls, callback verdicts); unset: a random seed.
    seed: int | None = Field(default=None, ge=0)


class Settings(BaseSettings):
    """Everything, loaded at once. Build it with `load_settings()` for readable errors."""

    model_config = _config("PAYOUTS_")

    env: Literal["dev", "production"] = "production"
    data_dir: Path = Path(".data")
    portmone: PortmoneSettings = Field(default_factory=PortmoneSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    payout: PayoutSettings = Field(default_factory=PayoutSettings)
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    crypto: CryptoSettings = Field(default_factory=CryptoSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    telecom: TelecomSettings = Field(default_factory=TelecomSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    rabbit: RabbitSettings = Field(default_factory=RabbitSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @model_validator(mode="after")
    def _bill_attempt_outlasts_the_call(self) -> Settings:
        # A correctness rule, so it holds in dev mode too.
        problem = bill_attempt_timing_problem(self.portmone, self.payout)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    def require(self, component: str, needs: Iterable[str]) -> None:
        """Refuse to start `component` when a needed setting is missing.

        `needs` names sections: "portmone", "crypto", "telegram", "webhook", "rabbit", "temporal". In
        dev mode the embedded defaults stand in, so nothing is required.
        """
        if self.is_dev:
            return
        problems: list[str] = []
        for need in needs:
            problems.extend(_CHECKS[need](self))
        if problems:
            raise ConfigError(
                f"{component} cannot start in production:\n"
                + "\n".join(f"  - {p}" for p in problems)
                + "\nSet them in the environment or .env (PAYOUTS_ENV=dev uses the embedded dev defaults)."
            )


def bill_attempt_timing_problem(portmone: PortmoneSettings, payout: PayoutSettings) -> str | None:
    """Why one bills.create attempt could end (start-to-close) while its Portmone call is still
    running and before its ledger writes are done, or None when the timing is sound."""
    budget = portmone.total_timeout_seconds
    needed = budget + BILL_ATTEMPT_LEDGER_MARGIN_SECONDS
    attempt = payout.bill_attempt_timeout_seconds
    if attempt > needed:
        return None
    return (
        f"PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS={attempt:g} must be greater than the Portmone call's total "
        f"budget PORTMONE_CONNECT_TIMEOUT_SECONDS={portmone.connect_timeout_seconds:g} + "
        f"PORTMONE_WRITE_TIMEOUT_SECONDS={portmone.write_timeout_seconds:g} + "
        f"PORTMONE_READ_TIMEOUT_SECONDS={portmone.read_timeout_seconds:g} = {budget:g} s, plus "
        f"{BILL_ATTEMPT_LEDGER_MARGIN_SECONDS:g} s for the ledger writes around the call (more than {needed:g} s)"
    )


def _check_portmone(s: Settings) -> list[str]:
    p = s.portmone
    out: list[str] = []
    if not p.login:
        out.append("PORTMONE_LOGIN is not set")
    if not p.password.get_secret_value():
        out.append("PORTMONE_PASSWORD is not set")
    if p.cert_path is None:
        out.append("PORTMONE_CERT_PATH is not set (Portmone requires its client certificate)")
    elif not p.cert_path.is_file():
        out.append(f"PORTMONE_CERT_PATH points to no file: {p.cert_path}")
    if p.key_path is not None and not p.key_path.is_file():
        out.append(f"PORTMONE_KEY_PATH points to no file: {p.key_path}")
    if not p.api_base.startswith("https://"):
        out.append("PORTMONE_API_BASE must be an https:// URL")
    if not p.payee_id and not p.payee_prefixes:
        out.append("PORTMONE_PAYEE_ID (or PORTMONE_PAYEE_PREFIXES) is not set")
    return out


def _check_crypto(s: Settings) -> list[str]:
    from cryptography.fernet import Fernet

    out: list[str] = []
    keys = s.crypto.fernet_key_list()
    if not keys:
        out.append("PAYOUTS_FERNET_KEYS is not set (comma-separated Fernet keys, newest first)")
    for i, key in enumerate(keys):
        try:
            Fernet(key.encode())
        except ValueError:
            out.append(f"PAYOUTS_FERNET_KEYS entry {i + 1} is not a valid Fernet key")
    if len(s.crypto.hmac_key.get_secret_value()) < 32:
        out.append("PAYOUTS_HMAC_KEY must be set to at least 32 characters")
    out.extend(_check_codec_keys(s))
    return out


def _check_codec_keys(s: Settings) -> list[str]:
    from runtime.codec import CodecKeyError, parse_codec_keys

    try:
        keys = parse_codec_keys(s.crypto.codec_keys.get_secret_value())
    except CodecKeyError as exc:
        return [f"PAYOUTS_CODEC_KEYS: {exc}"]
    if not keys:
        return ["PAYOUTS_CODEC_KEYS is not set (id:base64key,... newest first; encrypts Temporal payloads)"]
    return []


def _check_telegram(s: Settings) -> list[str]:
    return [] if s.telegram.bot_token.get_secret_value() else ["TELEGRAM_BOT_TOKEN is not set"]


_MIN_SECRET_CHARS = 32


def _check_webhook(s: Settings) -> list[str]:
    w = s.webhook
    out: list[str] = []
    if not w.intake_token.get_secret_value() and not w.intake_secret_list():
        out.append(
            "WEBHOOK_INTAKE_TOKEN or WEBHOOK_INTAKE_HMAC_SECRETS is not set (the intake endpoint would accept anyone)"
        )
    for name, secrets in (
        ("WEBHOOK_INTAKE_HMAC_SECRETS", w.intake_secret_list()),
        ("WEBHOOK_CALLBACK_HMAC_SECRETS", w.callback_secret_list()),
    ):
        if any(len(secret) < _MIN_SECRET_CHARS for secret in secrets):
            out.append(f"{name}: every secret must be at least {_MIN_SECRET_CHARS} characters")
    problem = callback_auth_problem(w)
    if problem:
        out.append(problem)
    if w.codec_oidc_jwks_url.startswith("http://"):
        out.append("WEBHOOK_CODEC_OIDC_JWKS_URL must be https:// in production (the keys that admit operators)")
    out.extend(_check_tls(s))
    return out


def callback_auth_problem(w: WebhookSettings) -> str | None:
    """Why Portmone callbacks would be believed from anyone (no check configured), or None.

    Production refuses it twice: `require` lists it before anything connects, and the webhook's
    callback verifier refuses to be built with it (webhook.callback_auth)."""
    if w.callback_secret_list() or w.allowed_networks() or w.client_fingerprints():
        return None
    return (
        "no Portmone callback authentication is configured (the callback endpoint would accept anyone): set "
        "WEBHOOK_CALLBACK_HMAC_SECRETS, WEBHOOK_CALLBACK_ALLOWED_CIDRS and/or WEBHOOK_TLS_CLIENT_FINGERPRINTS"
    )


def client_certificate_problem(w: WebhookSettings) -> str | None:
    """Why the configured client-certificate fingerprints could never be seen, or None (any mode)."""
    if w.client_fingerprints() and (w.tls_cert_path is None or w.tls_client_ca_path is None):
        return (
            "WEBHOOK_TLS_CLIENT_FINGERPRINTS needs HTTPS with client certificates: set WEBHOOK_TLS_CERT_PATH, "
            "WEBHOOK_TLS_KEY_PATH and WEBHOOK_TLS_CLIENT_CA_PATH"
        )
    return None


def _check_tls(s: Settings) -> list[str]:
    w = s.webhook
    out: list[str] = []
    files = {
        "WEBHOOK_TLS_CERT_PATH": w.tls_cert_path,
        "WEBHOOK_TLS_KEY_PATH": w.tls_key_path,
        "WEBHOOK_TLS_CLIENT_CA_PATH": w.tls_client_ca_path,
    }
    for name, path in files.items():
        if path is not None and not path.is_file():
            out.append(f"{name} points to no file: {path}")
    if (w.tls_cert_path is None) != (w.tls_key_path is None):
        out.append("WEBHOOK_TLS_CERT_PATH and WEBHOOK_TLS_KEY_PATH go together (HTTPS needs both)")
    problem = client_certificate_problem(w)
    if problem:
        out.append(problem)
    return out


def _check_rabbit(s: Settings) -> list[str]:
    if not s.rabbit.url.get_secret_value():
        return ["RABBIT_URL is not set (amqp://user:password@host:port/vhost of the bot's RabbitMQ)"]
    return []


def _check_temporal(s: Settings) -> list[str]:
    t = s.temporal
    profile = t.connection_profile
    out = [f"Temporal TLS {f.what} points to no file: {f.path}" for f in tp.tls_files(profile) if not f.path.is_file()]
    if profile.tls is not None and (profile.tls.client_cert is None) != (profile.tls.client_private_key is None):
        out.append("TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together (mutual TLS needs both)")
    if not tp.tls_enabled(profile) and not tp.is_local(t.address) and not t.allow_plaintext:
        out.append(tp.plaintext_refusal(t.address))
    return out


_CHECKS = {
    "portmone": _check_portmone,
    "crypto": _check_crypto,
    "telegram": _check_telegram,
    "webhook": _check_webhook,
    "rabbit": _check_rabbit,
    "temporal": _check_temporal,
}


def env_prefix(cls: type[BaseSettings]) -> str:
    """The prefix of a settings class's environment variables (`TEMPORAL_`)."""
    return str(cls.model_config.get("env_prefix", ""))


def setting_sections() -> dict[str, type[BaseSettings]]:
    """Settings' sections by field name, each with its own env prefix."""
    out: dict[str, type[BaseSettings]] = {}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            out[name] = annotation
    return out


def load_settings() -> Settings:
    """Read every section; an invalid value becomes one ConfigError naming all bad variables."""
    problems: list[str] = []
    sections: dict[str, BaseSettings] = {}
    for name, cls in setting_sections().items():
        prefix = env_prefix(cls)
        try:
            sections[name] = cls()
        except ValidationError as exc:
            for err in exc.errors():
                if err["loc"]:
                    problems.append(f"{prefix}{str(err['loc'][0]).upper()}: {err['msg']}")
                else:  # a rule over the whole section names its own variables
                    problems.append(err["msg"].removeprefix("Value error, "))
    if problems:
        raise ConfigError("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))
    try:
        return Settings(**sections)  # type: ignore[arg-type]  # __init__ also reads PAYOUTS_ENV / _DATA_DIR
    except ValidationError as exc:
        # A field error names its PAYOUTS_ variable; a rule across sections names its own.
        msgs = [
            f"PAYOUTS_{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"] else e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise ConfigError("invalid settings:\n" + "\n".join(f"  - {m}" for m in msgs)) from None
