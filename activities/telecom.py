"""The optional telecom top-up, keyed by the payout id so a retry never tops up twice."""

from __future__ import annotations

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from payouts import failures
from payouts.models import TopupInput, TopupOutput
from payouts.msisdn import MsisdnVault
from payouts.names import ActivityName


class TelecomActivities:
    def __init__(self, api_url: str | None, api_token: str, vault: MsisdnVault, http: httpx.AsyncClient) -> None:
        self._url = api_url
        self._token = api_token
        self._vault = vault
        self._http = http

    @activity.defn(name=ActivityName.TOPUP)
    async def topup(self, inp: TopupInput) -> TopupOutput:
        if not self._url:
            return TopupOutput(configured=False)
        headers = {"Idempotency-Key": inp.payout_id}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = {
            "msisdn": self._vault.decrypt(inp.msisdn_token),
            "amount_kopecks": inp.amount_kopecks,
            "currency": inp.currency,
            "reference": inp.payout_id,
        }
        try:
            resp = await self._http.post(self._url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            message = f"telecom API unreachable: {type(exc).__name__}"
            raise ApplicationError(message, type=failures.TELECOM_UNAVAILABLE) from None
        if 400 <= resp.status_code < 500 and resp.status_code != 429:
            message = f"telecom API refused the top-up: HTTP {resp.status_code}"
            raise ApplicationError(message, type=failures.TELECOM_REFUSED, non_retryable=True)
        if resp.status_code >= 300:
            raise ApplicationError(f"telecom API answered HTTP {resp.status_code}", type=failures.TELECOM_UNAVAILABLE)
        data = resp.json()
        return TopupOutput(configured=True, topup_id=str(data.get("topup_id", "")) or None)
