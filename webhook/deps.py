"""What the webhook handlers share, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from ledger import Ledger
from payouts.models import PayoutPolicy
from payouts.msisdn import MsisdnVault
from payouts.settings import Settings


@dataclass
class WebhookDeps:
    settings: Settings
    ledger: Ledger
    temporal: Client
    vault: MsisdnVault

    @property
    def policy(self) -> PayoutPolicy:
        p = self.settings.payout
        return PayoutPolicy(
            callback_timeout_seconds=p.callback_timeout_seconds,
            max_bill_rounds=p.max_bill_rounds,
            retry_backoff_seconds=p.retry_backoff_seconds,
            manual_reminder_seconds=p.manual_reminder_seconds,
            reminders_per_run=p.reminders_per_run,
            bill_attempt_timeout_seconds=p.bill_attempt_timeout_seconds,
        )
