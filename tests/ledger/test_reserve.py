from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

import pytest

from ledger import (
    AMOUNT_OVER_MAX,
    DAILY_BUDGET,
    DUPLICATE_FISCAL_KEY,
    DUPLICATE_RECEIPT,
    USER_DAILY_LIMIT,
    Ledger,
)
from payouts.status import PayoutStatus
from tests.ledger.helpers import DAY, make_req, reserved


async def test_happy_path_inserts_reserved_row_and_counts_the_day(ledger: Ledger) -> None:
    req = make_req(amount_kopecks=2_500, fiscal_key="FN1:FD2:FP3")
    result = await ledger.payouts.reserve(req)
    assert (result.accepted, result.status, result.reason, result.replay) == (
        True,
        PayoutStatus.RESERVED,
        None,
        False,
    )
    row = await ledger.payouts.get(req.payout_id)
    assert row is not None
    assert (row.receipt_id, row.fiscal_key, row.amount_kopecks, row.owner, row.business_day) == (
        req.receipt_id,
        "FN1:FD2:FP3",
        2_500,
        req.owner,
        DAY,
    )
    assert row.row_version == 1
    assert row.created_at.utcoffset() == timedelta(0)
    assert row.created_at.tzinfo is not None
    assert await ledger.payouts.by_receipt(req.receipt_id) == row
    assert await ledger.payouts.day_totals(DAY) == (1, 2_500)
    history = await ledger.payouts.history(req.payout_id)
    assert [(h.from_status, h.to_status) for h in history] == [(None, PayoutStatus.RESERVED)]


async def test_replay_by_same_owner_returns_stored_answer(ledger: Ledger) -> None:
    req = make_req()
    first = await ledger.payouts.reserve(req)
    again = await ledger.payouts.reserve(req)
    assert again.replay
    assert again.accepted
    assert again.payout_id == first.payout_id
    assert again.status == PayoutStatus.RESERVED
    assert await ledger.payouts.day_totals(DAY) == (1, req.amount_kopecks)


async def test_replay_of_a_rejected_reserve_stays_rejected(ledger: Ledger) -> None:
    req = make_req(amount_kopecks=200_000, max_payout_kopecks=100_000)
    assert (await ledger.payouts.reserve(req)).reason == AMOUNT_OVER_MAX
    again = await ledger.payouts.reserve(req)
    assert (again.replay, again.accepted, again.status, again.reason) == (
        True,
        False,
        PayoutStatus.REJECTED,
        AMOUNT_OVER_MAX,
    )


async def test_duplicate_receipt_by_other_owner_writes_nothing(ledger: Ledger) -> None:
    req = make_req()
    await ledger.payouts.reserve(req)
    other = await ledger.payouts.reserve(make_req(receipt_id=req.receipt_id, owner="another-run", payout_id="p-2"))
    assert (other.accepted, other.reason, other.replay, other.payout_id) == (
        False,
        DUPLICATE_RECEIPT,
        False,
        req.payout_id,
    )
    assert await ledger.payouts.get("p-2") is None
    stored = await ledger.payouts.by_receipt(req.receipt_id)
    assert stored is not None
    assert stored.owner == req.owner
    assert stored.status == PayoutStatus.RESERVED
    assert await ledger.payouts.day_totals(DAY) == (1, req.amount_kopecks)


async def test_a_new_run_of_the_same_payout_gets_the_stored_answer_with_the_status_now(ledger: Ledger) -> None:
    """A workflow reset or continue-as-new asks again under another owner: it is the same payout, not a
    duplicate of itself (rows written when the owner was a run id included)."""
    req = make_req(owner="run-1")
    await ledger.payouts.reserve(req)
    await ledger.payouts.transition(req.payout_id, PayoutStatus.BILL_REQUESTED)

    again = await ledger.payouts.reserve(make_req(receipt_id=req.receipt_id, owner=req.payout_id))

    assert (again.accepted, again.replay, again.status, again.payout_id) == (
        True, True, PayoutStatus.BILL_REQUESTED, req.payout_id
    )
    assert await ledger.payouts.day_totals(DAY) == (1, req.amount_kopecks)


async def test_duplicate_fiscal_key_is_rejected_with_null_key(ledger: Ledger) -> None:
    await reserved(ledger, fiscal_key="FK-1")
    dup = make_req(fiscal_key="FK-1")
    result = await ledger.payouts.reserve(dup)
    assert (result.accepted, result.status, result.reason) == (
        False,
        PayoutStatus.REJECTED,
        DUPLICATE_FISCAL_KEY,
    )
    row = await ledger.payouts.get(dup.payout_id)
    assert row is not None
    assert row.fiscal_key is None
    assert row.reason == DUPLICATE_FISCAL_KEY
    # a third receipt with the same key is rejected too (and the unique index still holds)
    third = await ledger.payouts.reserve(make_req(fiscal_key="FK-1"))
    assert third.reason == DUPLICATE_FISCAL_KEY
    assert await ledger.payouts.day_totals(DAY) == (1, 2_500)


async def test_amount_over_max_is_rejected(ledger: Ledger) -> None:
    result = await ledger.payouts.reserve(make_req(amount_kopecks=100_001, max_payout_kopecks=100_000))
    assert (result.accepted, result.reason) == (False, AMOUNT_OVER_MAX)
    assert await ledger.payouts.day_totals(DAY) == (0, 0)
    exactly = await ledger.payouts.reserve(make_req(amount_kopecks=100_000, max_payout_kopecks=100_000))
    assert exactly.accepted


async def test_user_daily_limit(ledger: Ledger) -> None:
    user = "b2" * 32
    for _ in range(2):
        await reserved(ledger, user_key=user, user_daily_limit=2)
    third = await ledger.payouts.reserve(make_req(user_key=user, user_daily_limit=2))
    assert (third.accepted, third.reason) == (False, USER_DAILY_LIMIT)
    # another user, or the same user another day, is not affected
    assert (await ledger.payouts.reserve(make_req(user_daily_limit=2))).accepted
    next_day = make_req(user_key=user, user_daily_limit=2, business_day=DAY + timedelta(1))
    assert (await ledger.payouts.reserve(next_day)).accepted


async def test_rejected_rows_do_not_count_against_the_user_limit(ledger: Ledger) -> None:
    user = "c3" * 32
    over = await ledger.payouts.reserve(make_req(user_key=user, user_daily_limit=1, amount_kopecks=999_999))
    assert over.reason == AMOUNT_OVER_MAX
    assert (await ledger.payouts.reserve(make_req(user_key=user, user_daily_limit=1))).accepted


async def test_daily_budget(ledger: Ledger) -> None:
    await reserved(ledger, amount_kopecks=6_000, daily_budget_kopecks=10_000)
    over = await ledger.payouts.reserve(make_req(amount_kopecks=4_001, daily_budget_kopecks=10_000))
    assert (over.accepted, over.reason) == (False, DAILY_BUDGET)
    fits = await ledger.payouts.reserve(make_req(amount_kopecks=4_000, daily_budget_kopecks=10_000))
    assert fits.accepted
    assert await ledger.payouts.day_totals(DAY) == (2, 10_000)


async def test_released_amount_after_failed_frees_budget_and_user_slot(ledger: Ledger) -> None:
    user = "d4" * 32
    limits = {"daily_budget_kopecks": 10_000, "user_daily_limit": 1, "user_key": user}
    first = await reserved(ledger, amount_kopecks=8_000, **limits)
    assert (await ledger.payouts.reserve(make_req(amount_kopecks=8_000, **limits))).reason == USER_DAILY_LIMIT
    await ledger.payouts.transition(first, PayoutStatus.FAILED, reason="portmone_permanent")
    assert await ledger.payouts.day_totals(DAY) == (0, 0)
    assert (await ledger.payouts.reserve(make_req(amount_kopecks=8_000, **limits))).accepted
    assert await ledger.payouts.day_totals(DAY) == (1, 8_000)


async def test_cancel_from_manual_review_releases_once(ledger: Ledger) -> None:
    pid = await reserved(ledger, amount_kopecks=3_000)
    await ledger.payouts.transition(pid, PayoutStatus.MANUAL_REVIEW, reason="outcome_unknown")
    assert await ledger.payouts.day_totals(DAY) == (1, 3_000)
    await ledger.payouts.transition(pid, PayoutStatus.CANCELLED, reason="operator")
    await ledger.payouts.transition(pid, PayoutStatus.CANCELLED)  # a replay releases nothing more
    assert await ledger.payouts.day_totals(DAY) == (0, 0)


@pytest.mark.parametrize("n", [2, 10])
async def test_concurrent_reserves_of_one_receipt_make_one_row(db_url: str, ledger: Ledger, n: int) -> None:
    other = Ledger.from_url(db_url)  # a second engine: a second process in miniature
    try:
        req = make_req()
        owners = [
                req if i % 3 == 0 else make_req(receipt_id=req.receipt_id, owner=f"other-{i}", payout_id=f"p-{i}")
                for i in range(n)
            ]
        results = await asyncio.gather(*((ledger if i % 2 else other).payouts.reserve(r) for i, r in enumerate(owners)))
    finally:
        await other.aclose()
    rows = await ledger.payouts.find()
    assert len(rows) == 1
    assert rows[0].status == PayoutStatus.RESERVED
    winner = rows[0].owner
    for r, res in zip(owners, results, strict=True):
        if r.owner == winner:
            assert res.accepted
            assert res.payout_id == rows[0].id
        else:
            assert (res.accepted, res.reason) == (False, DUPLICATE_RECEIPT)
    assert sum(1 for res in results if res.accepted and not res.replay) == 1
    assert await ledger.payouts.day_totals(DAY) == (1, req.amount_kopecks)


async def test_concurrent_reserves_for_one_user_hit_the_limit_exactly(ledger: Ledger) -> None:
    user = "e5" * 32
    reqs = [make_req(user_key=user, user_daily_limit=3) for _ in range(10)]
    results = await asyncio.gather(*(ledger.payouts.reserve(r) for r in reqs))
    assert sum(r.accepted for r in results) == 3
    assert [r.reason for r in results if not r.accepted] == [USER_DAILY_LIMIT] * 7
    assert len(await ledger.payouts.find(status=PayoutStatus.RESERVED)) == 3
    assert len(await ledger.payouts.find(status=PayoutStatus.REJECTED, reason=USER_DAILY_LIMIT)) == 7
    assert await ledger.payouts.day_totals(DAY) == (3, 3 * 2_500)


async def test_concurrent_reserves_never_exceed_the_budget(ledger: Ledger) -> None:
    reqs = [make_req(amount_kopecks=3_000, daily_budget_kopecks=10_000) for _ in range(8)]
    results = await asyncio.gather(*(ledger.payouts.reserve(r) for r in reqs))
    assert sum(r.accepted for r in results) == 3
    assert await ledger.payouts.day_totals(DAY) == (3, 9_000)


async def test_concurrent_duplicate_fiscal_keys_on_different_days(ledger: Ledger) -> None:
    reqs = [make_req(fiscal_key="FK-RACE", business_day=DAY + timedelta(days=i)) for i in range(4)]
    results = await asyncio.gather(*(ledger.payouts.reserve(r) for r in reqs))
    assert sum(r.accepted for r in results) == 1
    assert [r.reason for r in results if not r.accepted] == [DUPLICATE_FISCAL_KEY] * 3


async def test_invalid_amounts_are_refused_before_the_database(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="positive"):
        await ledger.payouts.reserve(make_req(amount_kopecks=0))
    with pytest.raises(TypeError, match="kopecks"):
        await ledger.payouts.reserve(make_req(amount_kopecks=25.0))
    assert await ledger.payouts.find() == []


async def test_times_are_utc_aware(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    row = await ledger.payouts.get(pid)
    assert row is not None
    assert row.updated_at.tzinfo == UTC
    assert row.created_at <= row.updated_at


async def test_concurrent_reserves_of_one_receipt_on_different_days(ledger: Ledger) -> None:
    """Different days take different locks: the unique receipt decides, the loser re-reads and answers."""
    req = make_req()
    reqs = [
        req,
        *(make_req(receipt_id=req.receipt_id, business_day=DAY + timedelta(days=i)) for i in range(1, 5)),
    ]
    results = await asyncio.gather(*(ledger.payouts.reserve(r) for r in reqs))
    rows = await ledger.payouts.find()
    assert len(rows) == 1
    assert sum(1 for res in results if res.accepted and not res.replay) == 1
    assert all(res.payout_id == rows[0].id for res in results)
    total = [await ledger.payouts.day_totals(DAY + timedelta(days=i)) for i in range(5)]
    assert sorted(total) == [(0, 0)] * 4 + [(1, req.amount_kopecks)]
