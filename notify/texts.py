"""What the user reads in Telegram, in Ukrainian (default) and English."""

from __future__ import annotations

from payouts.events import PayoutEvent, PayoutEventKind
from payouts.models import NotifyKind, ReminderInput
from payouts.money import format_amount
from payouts.rejection import TOLD_TO_USER, RejectionReason
from payouts.status import PayoutStatus

_TEXTS: dict[str, dict[NotifyKind, str]] = {
    "uk": {
        NotifyKind.PROCESSING: "⏳ Обробляємо ваше поповнення на {amount} грн.",
        NotifyKind.PAID: "✅ Поповнення на {amount} грн зараховано. Дякуємо!",
        NotifyKind.FAILED: "❌ Не вдалося зарахувати поповнення на {amount} грн.",
        NotifyKind.DELAYED: "🕓 Поповнення на {amount} грн затримується. Ми перевіряємо його вручну.",
        NotifyKind.CANCELLED: "❌ Поповнення на {amount} грн скасовано. Зверніться до підтримки, якщо це помилка.",
        NotifyKind.REJECTED: "ℹ️ Цей чек не дає права на поповнення (ліміт вичерпано).",
    },
    "en": {
        NotifyKind.PROCESSING: "⏳ Processing your top-up of UAH {amount}.",
        NotifyKind.PAID: "✅ Your top-up of UAH {amount} has been credited. Thank you!",
        NotifyKind.FAILED: "❌ We could not credit your top-up of UAH {amount}.",
        NotifyKind.DELAYED: "🕓 Your top-up of UAH {amount} is delayed. We are checking it by hand.",
        NotifyKind.CANCELLED: "❌ Your top-up of UAH {amount} was cancelled. Contact support if this is a mistake.",
        NotifyKind.REJECTED: "ℹ️ This receipt does not qualify for a top-up (limit reached).",
    },
}


_ALREADY_USED = {
    "uk": "ℹ️ Цей чек уже використано для поповнення.",
    "en": "ℹ️ This receipt has already been used for a top-up.",
}
_TOO_OLD = {
    "uk": "ℹ️ Цей чек застарий для поповнення: його прийнято надто давно.",
    "en": "ℹ️ This receipt is too old for a top-up: it was accepted too long ago.",
}
_OUTCOMES = {
    PayoutStatus.FAILED: NotifyKind.FAILED,
    PayoutStatus.CANCELLED: NotifyKind.CANCELLED,
    PayoutStatus.REJECTED: NotifyKind.REJECTED,
}


def user_text(kind: NotifyKind, language: str, amount_kopecks: int) -> str:
    texts = _TEXTS.get(language, _TEXTS["uk"])
    return texts[kind].format(amount=format_amount(amount_kopecks))


def event_text(event: PayoutEvent) -> str | None:
    """What the user reads about a payout event, or None when there is nothing to say."""
    if event.kind == PayoutEventKind.PENDING:
        return user_text(NotifyKind.PROCESSING, event.language, event.amount_kopecks)
    if event.kind == PayoutEventKind.SUCCESS:
        return user_text(NotifyKind.PAID, event.language, event.amount_kopecks)
    if event.kind == PayoutEventKind.MANUAL_REVIEW:
        return user_text(NotifyKind.DELAYED, event.language, event.amount_kopecks)
    if event.status == PayoutStatus.REJECTED and event.reason == RejectionReason.RECEIPT_TOO_OLD:
        return _TOO_OLD.get(event.language, _TOO_OLD["uk"])
    if event.status == PayoutStatus.REJECTED and event.reason not in TOLD_TO_USER:
        already_used = event.reason == RejectionReason.DUPLICATE_FISCAL_KEY
        return _ALREADY_USED.get(event.language, _ALREADY_USED["uk"]) if already_used else None
    kind = _OUTCOMES.get(event.status)
    return None if kind is None else user_text(kind, event.language, event.amount_kopecks)


def reminder_text(inp: ReminderInput) -> str:
    """The operators' chat reminder (English; ids and amounts only, never a phone)."""
    amount = f", {format_amount(inp.amount_kopecks)} UAH" if inp.amount_kopecks else ""
    family = inp.reason.partition(":")[0]
    return (
        f"⏰ Payout {inp.payout_id} (receipt {inp.receipt_id}{amount}) still waits in MANUAL_REVIEW: "
        f"{inp.reason} (reminder {inp.reminder_no}). What to do: docs/runbook.md, section {family}. "
        f"CLI: payouts ops show {inp.payout_id}"
    )
