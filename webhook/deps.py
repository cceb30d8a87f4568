"""What the webhook handlers share, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.client import Client

from ledger import Ledger
from payouts.models import PayoutPolicy
from payouts.msisdn import MsisdnVault
from payouts.settings import Settings
from webhook.callback_auth import CallbackVerifier
from webhook.intake_auth import IntakeVerifier


@dataclass
class WebhookDeps:
    settings: Settings
    ledger: Ledger
    temporal: Client
    vault: MsisdnVault
    # Built from `settings` here, once: a request never re-reads the secrets, networks or fingerprints.
    # A production webhook without any callback check is refused here (ConfigError).
    callback_auth: CallbackVerifier = field(init=False)
    intake_auth: IntakeVerifier = field(init=False)

    def __post_init__(self) -> None:
        self.callback_auth = CallbackVerifier.from_settings(self.settings)
        self.intake_auth = IntakeVerifier.from_settings(self.settings)

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
