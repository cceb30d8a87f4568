"""The `receipt.accepted` event as the bot's pipeline sends it (`POST /v1/receipts/accepted`, the
`receipt.accepted` queue, `payouts submit`), and the workflow input it becomes. Both doors read the
body with `read_json` and validate it with `AcceptedReceipt`: one rule for each field, in one place."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from payouts.models import (
    AcceptedAtInput,
    Currency,
    FiscalKey,
    Kopecks,
    MsisdnToken,
    PayeeId,
    PayoutRequest,
    PhoneInput,
    ReceiptId,
    TelegramId,
)
from payouts.msisdn import MsisdnVault, mask_msisdn, normalize_msisdn


class NotJson(ValueError):
    """A body that is not UTF-8 JSON."""


def read_json(raw: bytes) -> Any:
    """The body as JSON, read strictly as UTF-8 (the contract's encoding). `json.loads` given bytes
    would guess UTF-16 or UTF-32 from the first bytes and take them too; a byte-order mark is
    refused as well. Raises NotJson."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: absurd nesting
        raise NotJson("body is not UTF-8 JSON") from None


def _as_text(name: str) -> str:
    """A field name that is not text (a lone surrogate, from a `\\ud800` escape) spelt with escapes,
    so the unknown-field rule names it like any other, instead of the whole body failing."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


class AcceptedReceipt(BaseModel):
    """Every field is bounded by the types in payouts.models, which PayoutRequest shares: what is
    accepted here fits the ledger's columns on SQLite and PostgreSQL (docs/security.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receipt_id: ReceiptId
    telegram_id: TelegramId
    msisdn: PhoneInput | None = None
    msisdn_token: MsisdnToken | None = None
    amount_kopecks: Kopecks
    currency: Currency
    payee_id: PayeeId | None = None
    fiscal_key: FiscalKey | None = None
    accepted_at: AcceptedAtInput
    language: Literal["uk", "en"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _names_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {_as_text(k) if isinstance(k, str) else k: v for k, v in data.items()}
        return data

    @field_validator("msisdn")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else normalize_msisdn(value)

    @model_validator(mode="after")
    def _one_phone(self) -> AcceptedReceipt:
        if (self.msisdn is None) == (self.msisdn_token is None):
            raise ValueError("give exactly one of msisdn or msisdn_token")
        return self


def to_payout_request(
    receipt: AcceptedReceipt, vault: MsisdnVault, default_language: Literal["uk", "en"]
) -> PayoutRequest:
    """Encrypt a plaintext phone (or check a given token) so only a token enters Temporal.

    Raises MsisdnError for a token the configured keys cannot open, and pydantic's ValidationError
    when a derived field falls outside the workflow input's bounds.
    """
    if receipt.msisdn is not None:
        msisdn = receipt.msisdn
        token = vault.encrypt(msisdn)
    else:
        assert receipt.msisdn_token is not None
        token = receipt.msisdn_token
        msisdn = vault.decrypt(token)
    return PayoutRequest(
        receipt_id=receipt.receipt_id,
        telegram_id=receipt.telegram_id,
        msisdn_token=token,
        masked_msisdn=mask_msisdn(msisdn),
        user_key=vault.digest(msisdn),
        amount_kopecks=receipt.amount_kopecks,
        currency=receipt.currency,
        payee_id=receipt.payee_id,
        fiscal_key=receipt.fiscal_key,
        accepted_at=receipt.accepted_at,
        language=receipt.language or default_language,
    )
