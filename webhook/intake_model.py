"""The `receipt.accepted` event as the bot's pipeline sends it to `POST /v1/receipts/accepted`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from payouts.models import (
    AcceptedAt,
    Currency,
    FiscalKey,
    Kopecks,
    MsisdnToken,
    PayeeId,
    PhoneInput,
    ReceiptId,
    TelegramId,
)
from payouts.msisdn import normalize_msisdn


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
    accepted_at: AcceptedAt
    language: Literal["uk", "en"] | None = None

    @field_validator("msisdn")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else normalize_msisdn(value)

    @field_validator("accepted_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("accepted_at must carry a time zone (e.g. 2026-11-27T10:00:00Z)")
        return value

    @model_validator(mode="after")
    def _one_phone(self) -> AcceptedReceipt:
        if (self.msisdn is None) == (self.msisdn_token is None):
            raise ValueError("give exactly one of msisdn or msisdn_token")
        return self
