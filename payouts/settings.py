"""Settings from the environment (and `.env`), one section per prefix.

`PAYOUTS_ENV=dev` (what `payouts dev` sets) accepts the embedded dev defaults of
`payouts.devdefaults`; anything else is production, where `require(...)` refuses to start a
component that lacks what it needs and names every missing or invalid variable at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORTMONE_API_BASE = "https://direct.portmone.com.ua/api/directcash/"


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
    read_timeout_seconds: float = Field(default=20.0, gt=0)
    max_response_bytes: int = Field(default=256 * 1024, gt=0)


class LedgerSettings(BaseSettings):
    model_config = _config("LEDGER_")

    url: str = "sqlite+aiosqlite:///.data/ledger.db"
    user_daily_limit: int = Field(default=3, ge=1, description="payouts per user per day")
    daily_budget_kopecks: int = Field(default=10_000_000, ge=0)
    max_payout_kopecks: int = Field(default=100_000, ge=1)
    archive_retention_days: int = Field(default=90, ge=90)


class PayoutSettings(BaseSettings):
    model_config = _config("PAYOUT_")

    callback_timeout_seconds: int = Field(default=3600, ge=1)
    max_bill_rounds: int = Field(default=3, ge=1)
    retry_backoff_seconds: int = Field(default=300, ge=1)
    manual_reminder_seconds: int = Field(default=4 * 3600, ge=1)
    bill_attempt_timeout_seconds: int = Field(default=90, ge=1)
    eligibility_days: int = Field(default=30, ge=1)


class TemporalSettings(BaseSettings):
    model_config = _config("TEMPORAL_")

    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "payouts"


class CryptoSettings(BaseSettings):
    model_config = _config("PAYOUTS_")

    # Comma-separated Fernet keys, newest first: the first encrypts, all decrypt.
    fernet_keys: SecretStr = SecretStr("")
    hmac_key: SecretStr = SecretStr("")

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


class WebhookSettings(BaseSettings):
    model_config = _config("WEBHOOK_")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    intake_token: SecretStr = SecretStr("")
    max_body_bytes: int = Field(default=64 * 1024, gt=0)


class SandboxSettings(BaseSettings):
    model_config = _config("SANDBOX_")

    host: str = "127.0.0.1"
    port: int = Field(default=8099, ge=0, le=65535)
    callback_url: str | None = None
    callback_delay_seconds: float = Field(default=0.5, ge=0)


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

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    def require(self, component: str, needs: Iterable[str]) -> None:
        """Refuse to start `component` when a needed setting is missing.

        `needs` names sections: "portmone", "crypto", "telegram", "webhook". In dev mode
        the embedded defaults stand in, so nothing is required.
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
    return out


def _check_telegram(s: Settings) -> list[str]:
    return [] if s.telegram.bot_token.get_secret_value() else ["TELEGRAM_BOT_TOKEN is not set"]


def _check_webhook(s: Settings) -> list[str]:
    if not s.webhook.intake_token.get_secret_value():
        return ["WEBHOOK_INTAKE_TOKEN is not set (the intake endpoint would accept anyone)"]
    return []


_CHECKS = {
    "portmone": _check_portmone,
    "crypto": _check_crypto,
    "telegram": _check_telegram,
    "webhook": _check_webhook,
}

_PREFIXES = {
    PortmoneSettings: "PORTMONE_",
    LedgerSettings: "LEDGER_",
    PayoutSettings: "PAYOUT_",
    TemporalSettings: "TEMPORAL_",
    CryptoSettings: "PAYOUTS_",
    TelegramSettings: "TELEGRAM_",
    TelecomSettings: "TELECOM_",
    WebhookSettings: "WEBHOOK_",
    SandboxSettings: "SANDBOX_",
}


def load_settings() -> Settings:
    """Read every section; an invalid value becomes one ConfigError naming all bad variables."""
    problems: list[str] = []
    sections: dict[str, BaseSettings] = {}
    for cls, prefix in _PREFIXES.items():
        try:
            sections[cls.__name__] = cls()
        except ValidationError as exc:
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                problems.append(f"{prefix}{field.upper()}: {err['msg']}")
    if problems:
        raise ConfigError("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))
    try:
        return Settings(
            portmone=sections["PortmoneSettings"],
            ledger=sections["LedgerSettings"],
            payout=sections["PayoutSettings"],
            temporal=sections["TemporalSettings"],
            crypto=sections["CryptoSettings"],
            telegram=sections["TelegramSettings"],
            telecom=sections["TelecomSettings"],
            webhook=sections["WebhookSettings"],
            sandbox=sections["SandboxSettings"],
        )
    except ValidationError as exc:
        msgs = [f"PAYOUTS_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors() if e["loc"]]
        raise ConfigError("invalid settings:\n" + "\n".join(f"  - {m}" for m in msgs)) from None
