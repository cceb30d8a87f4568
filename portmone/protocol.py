"""Every PortmoneDirect protocol assumption, in one place.

Documented by Portmone: the endpoint, POST with form-encoded parameters, `method`, `login`,
`password`, `version`, optional `lang`, UTF-8 XML `<rsp status="ok|fail">`, `<error code="...">`
and (version 2) `<error_description>`, dates as DD.MM.YYYY.

Assumed until the full document is in hand (docs/portmone-protocol.md says the same): the
`bills.create` answer and the callback carry a `<bill>` element with the fields below; the status
vocabulary; the error codes of ERROR_CATALOGUE; that there is no status look-up method and no
idempotency key. Change an assumption here and in the doc, nowhere else.
"""

from __future__ import annotations

from enum import StrEnum

from payouts.verdicts import Verdict

DEFAULT_API_BASE = "https://direct.portmone.com.ua/api/directcash/"
PROTOCOL_VERSION = 2
LANGUAGES = ("uk", "ru", "en")
DATE_FORMAT = "%d.%m.%Y"

# Methods.
METHOD_BILLS_CREATE = "bills.create"
# No status look-up is documented; the escalation ladder skips that step while this is None.
METHOD_BILLS_STATUS: str | None = None

# Request parameters sent with every call.
P_METHOD = "method"
P_LOGIN = "login"
P_PASSWORD = "password"  # noqa: S105 - a parameter name, not a secret
P_VERSION = "version"
P_LANG = "lang"

# bills.create parameters.
P_PAYEE_ID = "payeeId"
P_CONTRACT_NUMBER = "contractNumber"
P_AMOUNT = "amount"
P_CURRENCY = "currency"
P_COMMENT = "comment"

# Parameters whose values must never be logged or archived in the clear.
SECRET_PARAMS = frozenset({P_PASSWORD})
PERSONAL_PARAMS = frozenset({P_CONTRACT_NUMBER})

# Response shape.
TAG_RSP = "rsp"
ATTR_STATUS = "status"
RSP_OK = "ok"
RSP_FAIL = "fail"
TAG_ERROR = "error"
ATTR_ERROR_CODE = "code"
TAG_ERROR_DESCRIPTION = "error_description"
TAG_BILL = "bill"
# Children of <bill>.
TAG_BILL_ID = "billId"
TAG_BILL_STATUS = "status"
TAG_CONTRACT_NUMBER = "contractNumber"
TAG_AMOUNT = "amount"
TAG_CURRENCY = "currency"
TAG_COMMENT = "comment"
TAG_PAYEE_ID = "payeeId"
TAG_BILL_DATE = "date"
# Assumed: a bill id is a short token (Portmone's look like digits). Anything else (markup, quotes,
# SQL-looking text, whitespace) is refused by the parser: the id becomes a route and a ledger key.
BILL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

CURRENCIES = frozenset({"UAH"})
MAX_COMMENT_LENGTH = 255


class BillStatus(StrEnum):
    """Portmone's bill vocabulary, matched case-insensitively; anything else is UNKNOWN."""

    CREATED = "CREATED"
    PAYED = "PAYED"
    REJECTED = "REJECTED"
    RETURN = "RETURN"
    UNKNOWN = "UNKNOWN"


def parse_bill_status(raw: str | None) -> BillStatus:
    value = (raw or "").strip().upper()
    try:
        return BillStatus(value) if value != BillStatus.UNKNOWN else BillStatus.UNKNOWN
    except ValueError:
        return BillStatus.UNKNOWN


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # try again later: a new request may succeed
    PERMANENT = "permanent"  # this request will never succeed; a person decides
    CONFIGURATION = "configuration"  # our setup is wrong (credentials, version, payee); page someone


# Assumed codes. Unknown codes are permanent-needs-review (see classify_error).
ERROR_CATALOGUE: dict[str, tuple[ErrorKind, str]] = {
    "1": (ErrorKind.TRANSIENT, "internal error at Portmone"),
    "2": (ErrorKind.TRANSIENT, "service temporarily unavailable"),
    "3": (ErrorKind.TRANSIENT, "too many requests"),
    "4": (ErrorKind.TRANSIENT, "operator did not answer in time"),
    "10": (ErrorKind.CONFIGURATION, "authentication failed"),
    "11": (ErrorKind.CONFIGURATION, "unsupported protocol version"),
    "12": (ErrorKind.CONFIGURATION, "unknown method"),
    "13": (ErrorKind.CONFIGURATION, "unknown payee"),
    "20": (ErrorKind.PERMANENT, "invalid contract number"),
    "21": (ErrorKind.PERMANENT, "invalid amount"),
    "22": (ErrorKind.PERMANENT, "unsupported currency"),
    "23": (ErrorKind.PERMANENT, "amount over the payee's limit"),
    "24": (ErrorKind.PERMANENT, "subscriber not found at the operator"),
    "30": (ErrorKind.PERMANENT, "payment declined"),
}


def classify_error(code: str | None) -> ErrorKind:
    """Unknown and missing codes are permanent: a person looks before anything is re-sent."""
    entry = ERROR_CATALOGUE.get((code or "").strip())
    return entry[0] if entry else ErrorKind.PERMANENT


def describe_error(code: str | None) -> str:
    entry = ERROR_CATALOGUE.get((code or "").strip())
    return entry[1] if entry else "unknown error code"


def callback_verdict(rsp_ok: bool, status: BillStatus | str | None, error_code: str | None) -> Verdict:
    """Portmone's words (`<rsp status>`, bill status, error code) as one domain verdict."""
    bill = status if isinstance(status, BillStatus) else parse_bill_status(status)
    if not rsp_ok:
        transient = classify_error(error_code) == ErrorKind.TRANSIENT
        return Verdict.DECLINED_TRANSIENT if transient else Verdict.DECLINED_PERMANENT
    return {
        BillStatus.PAYED: Verdict.PAID,
        BillStatus.CREATED: Verdict.PENDING,
        BillStatus.REJECTED: Verdict.DECLINED_PERMANENT,
        BillStatus.RETURN: Verdict.REVERSED,
    }.get(bill, Verdict.UNKNOWN)
