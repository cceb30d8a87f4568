"""What the sandbox is started with: credentials it accepts, payees it knows, where callbacks go."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime import devdefaults
from runtime.settings import PortmoneSettings, SandboxSettings, Settings
from sandbox.faults import FaultTable


@dataclass
class SandboxConfig:
    login: str = devdefaults.DEV_PORTMONE_LOGIN
    password: str = devdefaults.DEV_PORTMONE_PASSWORD
    payee_ids: set[str] = field(default_factory=lambda: {devdefaults.DEV_PAYEE_ID})
    callback_url: str | None = None
    callback_delay_seconds: float = 0.5
    seed: int | None = None
    faults: FaultTable = field(default_factory=FaultTable)
    telegram_token: str = devdefaults.DEV_TELEGRAM_TOKEN
    # Callback delivery: attempts per callback and the first back-off (doubled each time, capped).
    callback_max_attempts: int = 5
    callback_retry_seconds: float = 0.5
    callback_timeout_seconds: float = 10.0
    # Callbacks are signed (runtime.signing) with the first of these, as the webhook expects
    # (WEBHOOK_CALLBACK_HMAC_SECRETS); empty: unsigned.
    callback_hmac_secrets: list[str] = field(default_factory=list)
    # A payee's per-bill limit (answers code 23 above it).
    max_amount_kopecks: int = 1_000_000
    # How long `commit_then_hang` holds a request at most (shutdown and reset end it sooner).
    hang_seconds: float = 600.0
    max_body_bytes: int = 64 * 1024
    max_records: int = 10_000

    def __post_init__(self) -> None:
        if not self.login or not self.password:
            raise ValueError("sandbox login and password must not be empty")
        if not self.payee_ids:
            raise ValueError("sandbox needs at least one payee id")
        if self.callback_delay_seconds < 0 or self.callback_retry_seconds < 0:
            raise ValueError("sandbox delays must not be negative")
        if self.callback_max_attempts < 1:
            raise ValueError("callback_max_attempts must be at least 1")
        if self.seed is not None and self.seed < 0:
            raise ValueError("sandbox seed must not be negative")

    @classmethod
    def from_settings(
        cls, settings: Settings, *, faults: FaultTable | None = None, seed: int | None = None
    ) -> SandboxConfig:
        """From the loaded settings (`PORTMONE_*`, `SANDBOX_*`), dev defaults where unset; `seed`
        (the `--seed` flag) wins over `SANDBOX_SEED`."""
        config = cls.from_sections(settings.portmone, settings.sandbox, faults=faults, seed=seed)
        token = settings.telegram.bot_token.get_secret_value()
        if token:
            config.telegram_token = token
        config.callback_hmac_secrets = settings.webhook.callback_secret_list()[:1]
        return config

    @classmethod
    def from_sections(
        cls,
        portmone: PortmoneSettings,
        sandbox: SandboxSettings,
        *,
        faults: FaultTable | None = None,
        seed: int | None = None,
    ) -> SandboxConfig:
        payees = {pid for pid in (portmone.payee_id, *portmone.payee_prefixes.values()) if pid}
        return cls(
            login=portmone.login or devdefaults.DEV_PORTMONE_LOGIN,
            password=portmone.password.get_secret_value() or devdefaults.DEV_PORTMONE_PASSWORD,
            payee_ids=payees or {devdefaults.DEV_PAYEE_ID},
            callback_url=sandbox.callback_url or None,
            callback_delay_seconds=sandbox.callback_delay_seconds,
            seed=seed if seed is not None else sandbox.seed,
            faults=faults or FaultTable(),
        )

    def __repr__(self) -> str:
        return (
            f"SandboxConfig(login={self.login!r}, password='***', payee_ids={sorted(self.payee_ids)!r}, "
            f"callback_url={self.callback_url!r}, callback_delay_seconds={self.callback_delay_seconds}, "
            f"seed={self.seed!r})"
        )
