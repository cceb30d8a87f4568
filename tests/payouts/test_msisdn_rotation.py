"""Phone tokens (Fernet, MultiFernet) across a key rotation: the newest key encrypts, old tokens
still decrypt once a new key is put first, and intake accepts a token minted under the old key."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from payouts.models import payout_workflow_id
from payouts.msisdn import MsisdnError, MsisdnVault
from runtime import devdefaults
from tests.stack import TEST_PHONE, Stack
from tests.stack_checks import extra_webhook, workflow_exists

HMAC_KEY = devdefaults.DEV_HMAC_KEY.encode()


def test_old_tokens_still_decrypt_after_a_new_key_is_put_first() -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = MsisdnVault([old_key], HMAC_KEY)
    after = MsisdnVault([new_key, old_key], HMAC_KEY)
    old_token = before.encrypt(TEST_PHONE)

    assert after.decrypt(old_token) == TEST_PHONE
    new_token = after.encrypt(TEST_PHONE)
    assert MsisdnVault([new_key], HMAC_KEY).decrypt(new_token) == TEST_PHONE  # the new key encrypts
    with pytest.raises(MsisdnError):
        before.decrypt(new_token)
    rotated = after.rotate(old_token)
    assert MsisdnVault([new_key], HMAC_KEY).decrypt(rotated) == TEST_PHONE  # re-encrypted under the new key
    assert TEST_PHONE not in old_token + new_token + rotated
    # The keyed HMAC (the ledger's per-user key) does not depend on the Fernet keys.
    assert before.digest(TEST_PHONE) == after.digest(TEST_PHONE)


async def test_intake_accepts_a_token_from_before_the_rotation(stack: Stack) -> None:
    old_token = MsisdnVault([devdefaults.DEV_FERNET_KEY], HMAC_KEY).encrypt(TEST_PHONE)
    rotated_keys = f"{Fernet.generate_key().decode()},{devdefaults.DEV_FERNET_KEY}"
    crypto = stack.settings.crypto.model_copy(update={"fernet_keys": SecretStr(rotated_keys)})
    body = {
        "receipt_id": "ROTATED-TOKEN-1",
        "telegram_id": 4242,
        "msisdn_token": old_token,
        "amount_kopecks": 2500,
        "currency": "UAH",
        "accepted_at": datetime.now(UTC).isoformat(),
    }
    async with extra_webhook(stack, stack.settings.model_copy(update={"crypto": crypto})) as urls:
        resp = await stack.http.post(
            f"{urls.internal}/v1/receipts/accepted",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {devdefaults.DEV_INTAKE_TOKEN}"},
        )

    assert resp.status_code == 202, resp.text
    assert await workflow_exists(stack.client, payout_workflow_id("ROTATED-TOKEN-1"))
