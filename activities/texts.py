"""What the user reads in Telegram, in Ukrainian (default) and English."""

from __future__ import annotations

from payouts.models import NotifyKind, ReminderInput
from payouts.money import format_amount

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


def user_text(kind: NotifyKind, language: str, amount_kopecks: int) -> str:
    texts = _TEXTS.get(language, _TEXTS["uk"])
    return texts[kind].format(amount=format_amount(amount_kopecks))


def reminder_text(inp: ReminderInput) -> str:
    """The operators' chat reminder (English; ids and amounts only, never a phone)."""
    amount = f", {format_amount(inp.amount_kopecks)} UAH" if inp.amount_kopecks else ""
    family = inp.reason.partition(":")[0]
    return (
        f"⏰ Payout {inp.payout_id} (receipt {inp.receipt_id}{amount}) still waits in MANUAL_REVIEW: "
        f"{inp.reason} (reminder {inp.reminder_no}). What to do: docs/runbook.md, section {family}. "
        f"CLI: payouts ops show {inp.payout_id}"
    )
