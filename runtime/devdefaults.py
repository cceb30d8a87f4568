"""The embedded defaults `payouts dev` runs on. Not secrets: they only open the local sandbox.

Every value here is also documented in docs/development.md. Production never reads this module;
`payouts dev` copies these into the environment of the processes it starts (without overriding
anything already set).
"""

from __future__ import annotations

DEV_PORTMONE_LOGIN = "dev-login"
DEV_PORTMONE_PASSWORD = "dev-password"  # noqa: S105 - sandbox-only credential, documented
DEV_PAYEE_ID = "dev-payee-1"
DEV_FERNET_KEY = "cmVjZWlwdC1wYXlvdXRzLWRldi1vbmx5LWtleS0zMmI="
DEV_HMAC_KEY = "receipt-payouts-dev-only-hmac-key-000"
DEV_INTAKE_TOKEN = "dev-intake-token"  # noqa: S105 - dev-only, documented
DEV_TELEGRAM_TOKEN = "dev-bot-token"  # noqa: S105 - the fake Bot API accepts it
# Temporal payload codec key (AES-256-GCM), `id:base64key`: 32 ASCII bytes, base64.
DEV_CODEC_KEYS = "dev1:cmVjZWlwdC1wYXlvdXRzLWRldi1jb2RlYy1rZXktMDE="
# The sandbox signs its callbacks with it and the webhook checks them (docs/security.md).
DEV_CALLBACK_HMAC_SECRET = "receipt-payouts-dev-only-callback-secret"  # noqa: S105 - dev-only, documented

# The local RabbitMQ's stock account, which answers only on loopback.
DEV_RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def dev_environment(*, sandbox_url: str, webhook_url: str, data_dir: str) -> dict[str, str]:
    """Environment variables for every dev-mode process."""
    return {
        "PAYOUTS_ENV": "dev",
        "PAYOUTS_DATA_DIR": data_dir,
        "PORTMONE_LOGIN": DEV_PORTMONE_LOGIN,
        "PORTMONE_PASSWORD": DEV_PORTMONE_PASSWORD,
        "PORTMONE_PAYEE_ID": DEV_PAYEE_ID,
        "PORTMONE_API_BASE": f"{sandbox_url}/api/directcash/",
        "PAYOUTS_FERNET_KEYS": DEV_FERNET_KEY,
        "PAYOUTS_HMAC_KEY": DEV_HMAC_KEY,
        "PAYOUTS_CODEC_KEYS": DEV_CODEC_KEYS,
        "WEBHOOK_INTAKE_TOKEN": DEV_INTAKE_TOKEN,
        "WEBHOOK_CALLBACK_HMAC_SECRETS": DEV_CALLBACK_HMAC_SECRET,
        "TELEGRAM_BOT_TOKEN": DEV_TELEGRAM_TOKEN,
        "TELEGRAM_API_BASE": f"{sandbox_url}/telegram",
        "SANDBOX_CALLBACK_URL": f"{webhook_url}/portmone/callback",
        "LEDGER_URL": f"sqlite+aiosqlite:///{data_dir}/ledger.db",
        "RABBIT_URL": DEV_RABBIT_URL,
    }
