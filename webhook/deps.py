"""What the webhook handlers share, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from ledger import Ledger
from payouts.msisdn import MsisdnVault
from payouts.settings import Settings


@dataclass
class WebhookDeps:
    settings: Settings
    ledger: Ledger
    temporal: Client
    vault: MsisdnVault

