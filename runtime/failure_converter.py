"""The failure converter: our own failures stay readable, everything else is encrypted, every failure is small.

Operators read failures where the payload codec does not run: `temporal workflow describe`, the Web UI's
pending activities and its *Send an Update* dialog. So a failure's message is left in the clear when we
wrote it and it holds no personal data:

- an `ApplicationError` whose `type` is a name in `payouts.failures` (the activities build those messages
  with phones masked; `failures.UPDATE_REFUSED` is the update validators' refusal);
- an update's refusal: a plain `ValueError` raised while the workflow runs an update (the validators), an
  untyped `ApplicationError` the workflow itself raises there, a pydantic `ValidationError` of the
  update's argument (summarised as field and problem, never the input value), and the SDK's own
  "Failed decoding arguments" / "Update handler ... not found" answers to a bad update.

A readable message is cut to `READABLE_LIMIT` characters and carries no stack trace (the type names the
place; the worker log has the traceback). A message that contains a run of nine or more digits (it
might be a phone number) is encrypted instead, whatever its type.

Everything else (an exception from a library, whose message may echo SQL parameters or request data)
has its message and stack trace moved into `encoded_attributes`, which the payload codec encrypts, as
`DefaultFailureConverterWithEncodedAttributes` does. Its message is cut to `ENCODED_MESSAGE_LIMIT` and
its stack trace to the innermost `STACK_TRACE_LIMIT` characters.

Small: the server keeps a retrying activity's last failure only up to 4 KiB
(`limit.mutableStateActivityFailureSize.error`); above that `describe` and the Web UI show just
"Failure exceeds size limit." with the encrypted part dropped. A SQLAlchemy error with its cause and full
tracebacks is about 10 KB. So a failure chain is cut after `MAX_CHAIN` failures, or earlier once it would
pass `CHAIN_BUDGET_BYTES` encrypted. The complete exception is in the worker's log.

Decoding is the SDK's: a failure with `encoded_attributes` gets its message and stack trace back from
them, one without keeps its clear message, so clients see the same exception types and messages.
"""

from __future__ import annotations

import re
from typing import Any

import pydantic
from temporalio import workflow
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DefaultFailureConverter, PayloadConverter
from temporalio.exceptions import ApplicationError

from payouts import failures

READABLE_LIMIT = 300
ENCODED_MESSAGE_LIMIT = 600
STACK_TRACE_LIMIT = 900
MAX_CHAIN = 4
CHAIN_BUDGET_BYTES = 3 * 1024
# What the payload codec adds to each payload it encrypts (nonce, tag, metadata), for the budget.
_CODEC_OVERHEAD = 160

ENCODED_MESSAGE = "Encoded failure"  # the SDK's placeholder, which the Web UI knows
_ELLIPSIS = "…"

# The SDK's fixed words when an update cannot even reach its validator.
_SDK_BAD_ARGUMENTS = "Failed decoding arguments"
_SDK_NO_HANDLER = "Update handler for '"

# Nine or more digits, spaces, dashes, dots or brackets between them allowed: perhaps a phone number.
_LONG_NUMBER = re.compile(r"[0-9](?:[\s\-.()]*[0-9]){8,}")
# Python 3.11+ tracebacks underline the failing expression with lines of ^ and ~ only.
_MARKER_LINE = re.compile(r"^\s*[\^~]+\s*$")


def readable_types() -> frozenset[str]:
    """Every ApplicationError type named in `payouts.failures`: our words, no personal data."""
    return frozenset(
        value for name, value in vars(failures).items() if name.isupper() and isinstance(value, str)
    )


class PayoutsFailureConverter(DefaultFailureConverter):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=False)
        self._readable_types = readable_types()

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        # The default conversion calls this method again for each cause, so each node of the chain is
        # decided on its own, with its own exception at hand.
        super().to_failure(exception, payload_converter, failure)
        readable = self._readable_message(exception, failure)
        if readable is not None:
            failure.message = readable
            failure.stack_trace = ""
            failure.ClearField("encoded_attributes")
        else:
            _encode(failure, payload_converter)
        _bound_chain(failure)

    def _readable_message(self, exception: BaseException, failure: Failure) -> str | None:
        if not failure.HasField("application_failure_info"):
            return None
        if failure.application_failure_info.type in self._readable_types:
            text = failure.message
        elif _in_update():
            refusal = _update_refusal(exception)
            if refusal is None:
                return None
            text = refusal
        else:
            return None
        if _LONG_NUMBER.search(text):
            return None
        return _cut(text, READABLE_LIMIT)


def _in_update() -> bool:
    """True while workflow code runs an update's validator or handler (the SDK converts its refusal there)."""
    return workflow.in_workflow() and workflow.current_update_info() is not None


def _update_refusal(exception: BaseException) -> str | None:
    """The operator-facing words of an exception that refuses an update, or None when it is not one."""
    if type(exception) is ValueError:  # the validators' refusals
        return str(exception)
    if isinstance(exception, ApplicationError) and not exception.type and exception.failure is None:
        return exception.message  # raised by the workflow's own code (one decoded from a failure has a proto)
    if isinstance(exception, pydantic.ValidationError):
        return _summary(exception)
    if type(exception) is RuntimeError:
        text = str(exception)
        if text == _SDK_BAD_ARGUMENTS and isinstance(exception.__cause__, pydantic.ValidationError):
            return f"{text}: {_summary(exception.__cause__)}"
        if text.startswith(_SDK_NO_HANDLER):
            return text
    return None


def _summary(error: pydantic.ValidationError) -> str:
    """`field: problem; …`, without the input values pydantic's own message repeats."""
    parts = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(_cut(str(part), 40) for part in item["loc"]) or "input"
        parts.append(f"{where}: {item['msg']}")
    return f"invalid {error.title}: " + "; ".join(parts)


def _encode(failure: Failure, payload_converter: PayloadConverter) -> None:
    if failure.HasField("encoded_attributes") and failure.message == ENCODED_MESSAGE and not failure.stack_trace:
        return  # re-raised as it came (its attributes could not be decoded): keep them
    attributes: dict[str, Any] = {
        "message": _cut(failure.message, ENCODED_MESSAGE_LIMIT),
        "stack_trace": _tail(failure.stack_trace, STACK_TRACE_LIMIT),
    }
    failure.encoded_attributes.CopyFrom(payload_converter.to_payloads([attributes])[0])
    failure.message = ENCODED_MESSAGE
    failure.stack_trace = ""


def _bound_chain(failure: Failure) -> None:
    """Cut the cause chain after MAX_CHAIN failures or once it would pass CHAIN_BUDGET_BYTES encrypted."""
    node = failure
    count = 1
    total = _own_size(node)
    while node.HasField("cause"):
        cause = node.cause
        total += _own_size(cause)
        count += 1
        if count > MAX_CHAIN or total > CHAIN_BUDGET_BYTES:
            node.ClearField("cause")
            return
        node = cause


def _own_size(node: Failure) -> int:
    """A failure's bytes without its cause, plus what the codec adds to each of its payloads."""
    size = node.ByteSize()
    if node.HasField("cause"):
        size -= node.cause.ByteSize()
    payloads = int(node.HasField("encoded_attributes"))
    if node.HasField("application_failure_info"):
        payloads += len(node.application_failure_info.details.payloads)
    return size + payloads * _CODEC_OVERHEAD


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def _tail(trace: str, limit: int) -> str:
    """The innermost frames of a stack trace (its end), without the ^^^ marker lines."""
    lines = [line for line in trace.splitlines() if line.strip() and not _MARKER_LINE.match(line)]
    text = "\n".join(lines)
    return text if len(text) <= limit else _ELLIPSIS + text[-(limit - len(_ELLIPSIS)) :]
