"""What the webhook handlers share, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.client import Client

from ledger import Ledger
from payouts.msisdn import MsisdnVault
from runtime.settings import Settings
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
