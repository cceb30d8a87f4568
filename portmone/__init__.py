"""portmone room: the PortmoneDirect protocol and nothing else (no Temporal imports).

Public surface: `PortmoneClient`, the validated `BillRequest` it sends, its four outcomes, the
parsed `Bill` and `PortmoneError`, the hardened parser `parse_rsp` (answers and callbacks share
it), the redaction helpers, and the protocol vocabulary re-exported from `portmone.protocol`.
"""

from portmone.client import PortmoneClient
from portmone.protocol import BillStatus, ErrorKind, classify_error
from portmone.redact import mask_phones, redact_params, redact_xml
from portmone.request import BillRequest
from portmone.results import (
    AnsweredFail,
    AnsweredOk,
    Bill,
    Exchange,
    NotSent,
    Outcome,
    OutcomeUnknown,
    PortmoneError,
)
from portmone.xml import Rsp, XmlRejected, parse_rsp

__all__ = [
    "AnsweredFail",
    "AnsweredOk",
    "Bill",
    "BillRequest",
    "BillStatus",
    "ErrorKind",
    "Exchange",
    "NotSent",
    "Outcome",
    "OutcomeUnknown",
    "PortmoneClient",
    "PortmoneError",
    "Rsp",
    "XmlRejected",
    "classify_error",
    "mask_phones",
    "parse_rsp",
    "redact_params",
    "redact_xml",
]
