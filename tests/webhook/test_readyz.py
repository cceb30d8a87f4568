"""The webhook's `/readyz`: ready while the ledger and Temporal answer; a ledger outage makes it 503
and names the ledger (the same rule as the worker's, runtime.health)."""

from __future__ import annotations

from tests.stack import Stack


async def test_readyz_follows_the_ledger(shared_stack: Stack) -> None:
    url = f"{shared_stack.internal_url}/readyz"
    ok = await shared_stack.http.get(url)
    assert (ok.status_code, ok.json()) == (200, {"ready": True, "checks": {"ledger": "ok", "temporal": "ok"}})

    shared_stack.injected.ledger.method("ping").arm()
    try:
        down = await shared_stack.http.get(url)
    finally:
        shared_stack.injected.ledger.clear()
    assert down.status_code == 503
    assert down.json() == {"ready": False, "checks": {"ledger": "unavailable: LedgerUnavailable", "temporal": "ok"}}
