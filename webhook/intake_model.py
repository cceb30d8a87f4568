"""The `receipt.accepted` event as the bot's pipeline sends it to `POST /v1/receipts/accepted`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from payouts.models import ReceiptId
from payouts.msisdn import normalize_msisdn


class AcceptedReceipt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    receipt_id: ReceiptId
    telegram_id: StrictInt = Field(gt=0)
    msisdn: str | None = Field(default=None, max_length=32)
    msisdn_token: str | None = Field(default=None, min_length=10, max_length=1024)
    amount_kopecks: StrictInt = Field(gt=0, le=10_000_000)
    currency: Literal["UAH"]
    payee_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    fiscal_key: str | None = Field(default=None, min_length=1, max_length=128)
    accepted_at: datetime
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
