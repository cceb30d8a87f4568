"""Error texts of the simulated Portmone, per language: code -> (short message, long description)."""

from __future__ import annotations

_UK: dict[str, tuple[str, str]] = {
    "1": ("Внутрішня помилка", "Внутрішня помилка сервісу Portmone. Спробуйте пізніше."),
    "2": ("Сервіс недоступний", "Сервіс тимчасово недоступний. Спробуйте пізніше."),
    "3": ("Забагато запитів", "Перевищено кількість запитів. Повторіть запит пізніше."),
    "4": ("Оператор не відповів", "Оператор не відповів вчасно. Спробуйте пізніше."),
    "10": ("Помилка автентифікації", "Невірний логін або пароль."),
    "11": ("Невідома версія", "Версія протоколу не підтримується; допустимі значення: 1, 2."),
    "12": ("Невідомий метод", "Метод не підтримується або параметри передано не у формі."),
    "13": ("Невідомий отримувач", "Отримувача (payeeId) не знайдено."),
    "20": ("Невірний номер", "Номер телефону має бути у форматі 380XXXXXXXXX."),
    "21": ("Невірна сума", "Сума має бути додатним числом з двома знаками після крапки."),
    "22": ("Невірна валюта", "Валюта не підтримується; допустима валюта: UAH."),
    "23": ("Сума перевищує ліміт", "Сума перевищує ліміт отримувача."),
    "24": ("Абонента не знайдено", "Абонента не знайдено в мережі оператора."),
    "30": ("Платіж відхилено", "Оператор відхилив платіж."),
}
_RU: dict[str, tuple[str, str]] = {
    "1": ("Внутренняя ошибка", "Внутренняя ошибка сервиса Portmone. Попробуйте позже."),
    "2": ("Сервис недоступен", "Сервис временно недоступен. Попробуйте позже."),
    "3": ("Слишком много запросов", "Превышено количество запросов. Повторите запрос позже."),
    "4": ("Оператор не ответил", "Оператор не ответил вовремя. Попробуйте позже."),
    "10": ("Ошибка аутентификации", "Неверный логин или пароль."),
    "11": ("Неизвестная версия", "Версия протокола не поддерживается; допустимые значения: 1, 2."),
    "12": ("Неизвестный метод", "Метод не поддерживается или параметры переданы не в форме."),
    "13": ("Неизвестный получатель", "Получатель (payeeId) не найден."),
    "20": ("Неверный номер", "Номер телефона должен быть в формате 380XXXXXXXXX."),
    "21": ("Неверная сумма", "Сумма должна быть положительным числом с двумя знаками после точки."),
    "22": ("Неверная валюта", "Валюта не поддерживается; допустимая валюта: UAH."),
    "23": ("Сумма превышает лимит", "Сумма превышает лимит получателя."),
    "24": ("Абонент не найден", "Абонент не найден в сети оператора."),
    "30": ("Платеж отклонен", "Оператор отклонил платеж."),
}
_EN: dict[str, tuple[str, str]] = {
    "1": ("Internal error", "Internal error at Portmone. Try again later."),
    "2": ("Service unavailable", "The service is temporarily unavailable. Try again later."),
    "3": ("Too many requests", "Too many requests. Repeat the request later."),
    "4": ("Operator did not answer", "The operator did not answer in time. Try again later."),
    "10": ("Authentication failed", "Wrong login or password."),
    "11": ("Unknown version", "Unsupported protocol version; allowed values: 1, 2."),
    "12": ("Unknown method", "The method is not supported or the parameters were not form-encoded."),
    "13": ("Unknown payee", "The payee (payeeId) was not found."),
    "20": ("Invalid number", "The phone number must be in the form 380XXXXXXXXX."),
    "21": ("Invalid amount", "The amount must be a positive number with two decimals."),
    "22": ("Invalid currency", "Unsupported currency; allowed: UAH."),
    "23": ("Amount over limit", "The amount is over the payee's limit."),
    "24": ("Subscriber not found", "The subscriber was not found at the operator."),
    "30": ("Payment declined", "The operator declined the payment."),
}
_BY_LANG = {"uk": _UK, "ru": _RU, "en": _EN}
DEFAULT_LANG = "uk"


def error_text(code: str, lang: str | None) -> tuple[str, str]:
    """(short message, long description) of `code` in `lang` (Ukrainian by default)."""
    table = _BY_LANG.get(lang or DEFAULT_LANG, _UK)
    if code in table:
        return table[code]
    generic = {"uk": "Помилка", "ru": "Ошибка", "en": "Error"}.get(lang or DEFAULT_LANG, "Помилка")
    return generic, f"{generic} {code}"
