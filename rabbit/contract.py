"""The `receipt.accepted` message contract (docs/queue.md): a versioned JSON object.

Version 1: the HTTP intake body's fields (`payouts.receipt.AcceptedReceipt`) plus `version` (the
integer 1) and `status` (the rules engine's decision). Only `status: "accepted"` starts a payout; any
other status is acknowledged and counted, and its other fields are not read.

A message that cannot be read is refused with a reason that says which rule it broke; the consumer
puts it on the dead-letter queue with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from payouts.msisdn import mask_phones
from payouts.receipt import AcceptedReceipt, NotJson, read_json

SUPPORTED_VERSIONS = frozenset({1})
ACCEPTED = "accepted"
_ENVELOPE = ("version", "status")
# pydantic error types that mean "the wrong shape", as opposed to a value out of its bounds (any
# `…_type` too). `string_unicode`: a string that is not text (a lone surrogate from a `\ud800` escape).
_SHAPE_ERRORS = frozenset({"missing", "extra_forbidden", "model_type", "dict_type", "string_unicode"})


class DeadLetterReason(StrEnum):
    """Why the consumer put a message on the dead-letter queue (header `x-payouts-reason`, metric
    label). The first six are read from the body (`read_message`, the handler); the last two are the
    consumer's own."""

    TOO_LARGE = "too_large"  # over RABBIT_MAX_MESSAGE_BYTES
    INVALID_JSON = "invalid_json"  # not UTF-8 JSON
    SCHEMA_ERROR = "schema_error"  # not an object, no version/status, a field missing, unknown or of the wrong type
    UNKNOWN_VERSION = "unknown_version"  # a version this service does not read
    INVALID_PAYLOAD = "invalid_payload"  # well formed, but a value is refused (amount, phone, token, ids)
    CONFLICTING_DUPLICATE = "conflicting_duplicate"  # the receipt's payout was started by a differing request
    UNDECODABLE_PROPERTIES = "undecodable_properties"  # AMQP properties the client cannot decode (rabbit/frames.py)
    HANDLING_FAILED = "handling_failed"  # handling raised RABBIT_MAX_HANDLING_FAILURES times


# What a message's body can be refused for (`payouts publish --bad` publishes one of each).
BODY_REASONS: tuple[DeadLetterReason, ...] = tuple(DeadLetterReason)[:6]


class Refused(Exception):
    """A message that breaks the contract; `detail` names fields and rules, never values. Whatever
    of the message still reaches it (a field's name, a number a rule quotes back) is redacted here,
    as a phone number would be, before any header or log line sees it."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        detail = mask_phones(detail, blank_numbers=True)[:500]
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Decision:
    """What the rules engine decided about a receipt; `receipt` is set only for `accepted`."""

    version: int
    status: str
    receipt: AcceptedReceipt | None


def read_message(body: bytes, max_bytes: int) -> Decision:
    """Parse one message body; raises Refused."""
    if len(body) > max_bytes:
        raise Refused(DeadLetterReason.TOO_LARGE, f"{len(body)} bytes, more than {max_bytes}")
    try:
        data = read_json(body)
    except NotJson:
        raise Refused(DeadLetterReason.INVALID_JSON, "body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise Refused(DeadLetterReason.SCHEMA_ERROR, "body must be a JSON object")
    version, status = data.get("version"), data.get("status")
    if type(version) is not int:  # not bool, not 1.0
        raise Refused(DeadLetterReason.SCHEMA_ERROR, "version: required, an integer")
    if version not in SUPPORTED_VERSIONS:
        raise Refused(DeadLetterReason.UNKNOWN_VERSION, f"version {version} (this service reads {_versions()})")
    if not isinstance(status, str) or not status:
        raise Refused(DeadLetterReason.SCHEMA_ERROR, "status: required, a non-empty string")
    if status != ACCEPTED:
        # Only logged: redacted like any text of the client's.
        return Decision(version=version, status=mask_phones(status[:64], blank_numbers=True), receipt=None)
    fields = {k: v for k, v in data.items() if k not in _ENVELOPE}
    try:
        receipt = AcceptedReceipt.model_validate(fields)
    except ValidationError as exc:
        raise _refusal(exc) from None
    return Decision(version=version, status=status, receipt=receipt)


def invalid_payload(exc: ValidationError) -> Refused:
    """A derived value out of the workflow input's bounds: the message is well formed, a value is not."""
    return Refused(DeadLetterReason.INVALID_PAYLOAD, _describe(exc.errors()))


def _refusal(exc: ValidationError) -> Refused:
    errors = exc.errors()
    shape = any(err["type"] in _SHAPE_ERRORS or err["type"].endswith("_type") for err in errors)
    reason = DeadLetterReason.SCHEMA_ERROR if shape else DeadLetterReason.INVALID_PAYLOAD
    return Refused(reason, _describe(errors))


def _describe(errors: list[Any]) -> str:
    """`field: rule` for each error (pydantic's messages name the rule, not the input)."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in errors[:5])


def _versions() -> str:
    return ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
