"""The failure converter, through the real data converter (codec on): which failure messages stay
readable, which are encrypted, that both decode back to the same exceptions, and that every failure
stays under the server's 4 KiB limit for a retrying activity's last failure."""

from __future__ import annotations

import pydantic
import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import ApplicationError

from payouts import failures
from payouts.models import OperatorCancel
from runtime import failure_converter as fc
from runtime.codec import ENCODING
from runtime.temporal_client import data_converter
from tests.security.test_secret_hygiene import PHONE_FORMS
from tests.stack import TEST_PHONE, stack_crypto

# The server's default limit.mutableStateActivityFailureSize.error: above it, a retrying activity's
# last failure is replaced by "Failure exceeds size limit.".
SERVER_FAILURE_LIMIT = 4 * 1024


@pytest.fixture
def converter() -> DataConverter:
    return data_converter(stack_crypto())


def raised(exc: BaseException) -> BaseException:
    """`exc` with a traceback, as the SDK sees it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


async def encoded(converter: DataConverter, exc: BaseException) -> Failure:
    failure = Failure()
    await converter.encode_failure(raised(exc), failure)
    return failure


async def decoded(converter: DataConverter, failure: Failure) -> BaseException:
    copy = Failure()
    copy.CopyFrom(failure)
    return await converter.decode_failure(copy)


def is_encrypted(failure: Failure) -> bool:
    attrs = failure.encoded_attributes
    return failure.message == fc.ENCODED_MESSAGE and attrs.metadata.get("encoding") == ENCODING


def test_every_name_in_failures_is_readable_and_the_refusal_type_is_one() -> None:
    names = fc.readable_types()
    assert failures.UPDATE_REFUSED in names
    assert {failures.PERMANENT, failures.OUTCOME_UNKNOWN, failures.TRANSIENT, failures.NOT_SENT} <= names
    assert failures.TELEGRAM_UNAVAILABLE in names
    assert "SomeLibraryError" not in names and "ValueError" not in names


@pytest.mark.parametrize("kind", sorted(fc.readable_types()))
async def test_our_failures_keep_a_short_readable_message_and_round_trip(converter: DataConverter, kind: str) -> None:
    message = "Portmone refused bills.create: 20 contract +380•••••67 is not served " + "x" * 400
    failure = await encoded(converter, ApplicationError(message, "20", type=kind, non_retryable=True))

    assert failure.message == message[: fc.READABLE_LIMIT - 1] + "…"
    assert failure.stack_trace == "" and not failure.HasField("encoded_attributes")
    assert failure.application_failure_info.type == kind
    [detail] = failure.application_failure_info.details.payloads
    assert detail.metadata["encoding"] == ENCODING  # details are payloads: encrypted as ever

    back = await decoded(converter, failure)
    assert isinstance(back, ApplicationError)
    assert (back.type, back.message, back.non_retryable, back.details) == (kind, failure.message, True, ("20",))


@pytest.mark.parametrize("phone", PHONE_FORMS)
async def test_a_message_with_a_phone_like_number_is_encrypted_even_for_our_types(
    converter: DataConverter, phone: str
) -> None:
    refused = ApplicationError(f"Portmone refused: bad contract {phone}", type=failures.PERMANENT)
    failure = await encoded(converter, refused)

    assert is_encrypted(failure)
    assert phone.encode() not in failure.SerializeToString()
    back = await decoded(converter, failure)
    assert isinstance(back, ApplicationError) and back.type == failures.PERMANENT
    assert back.message == f"Portmone refused: bad contract {phone}"


async def test_other_exceptions_are_encrypted_message_and_stack_trace(converter: DataConverter) -> None:
    secret = f"invalid literal for int() with base 10: 'msisdn={TEST_PHONE}'"
    cases: list[tuple[BaseException, str]] = [
        (ValueError(secret), "ValueError"),
        (ApplicationError(secret, type="SomeLibraryError"), "SomeLibraryError"),
        (KeyError(secret), "KeyError"),
    ]
    for exc, kind in cases:
        failure = await encoded(converter, exc)
        assert is_encrypted(failure), exc
        assert failure.stack_trace == ""
        assert b"invalid literal" not in failure.SerializeToString()
        assert TEST_PHONE.encode() not in failure.SerializeToString()
        back = await decoded(converter, failure)
        assert isinstance(back, ApplicationError)
        assert back.type == kind
        assert "invalid literal" in back.message
        assert back.failure is not None and "test_failure_converter.py" in back.failure.stack_trace


def _deep(level: int) -> None:
    if level:
        _deep(level - 1)
    raise RuntimeError("driver said: " + "parameters (…) " * 2000)


async def test_a_long_chain_of_library_errors_stays_under_the_servers_limit(converter: DataConverter) -> None:
    exc: BaseException | None = None
    for depth in range(6):  # six chained errors, each with a 30 KB message and 40 frames
        try:
            try:
                _deep(40)
            except RuntimeError as inner:
                raise ConnectionError(f"level {depth}: " + "x" * 30_000) from (exc or inner)
        except ConnectionError as outer:
            exc = outer
    assert exc is not None
    old = Failure()
    await DataConverter(
        payload_codec=converter.payload_codec, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
    ).encode_failure(exc, old)
    assert old.ByteSize() > 100_000  # what the server used to be sent

    failure = Failure()
    await converter.encode_failure(exc, failure)
    assert failure.ByteSize() < SERVER_FAILURE_LIMIT
    back = await decoded(converter, failure)
    assert isinstance(back, ApplicationError) and back.type == "ConnectionError"
    assert back.message.startswith("level 5: xxx") and len(back.message) == fc.ENCODED_MESSAGE_LIMIT
    assert back.failure is not None and 0 < len(back.failure.stack_trace) <= fc.STACK_TRACE_LIMIT
    assert "^^^" not in back.failure.stack_trace
    assert back.__cause__ is not None  # the chain is cut, not dropped


async def test_failures_written_before_this_converter_still_decode(converter: DataConverter) -> None:
    """Histories of open payouts hold failures in the old shape: workers replay them, operators read them."""
    before = DataConverter(
        payload_codec=converter.payload_codec, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
    )
    olds = (ApplicationError("missing: operator", type="ValueError"), ApplicationError("no", type=failures.PERMANENT))
    for exc in olds:
        old = Failure()
        await before.encode_failure(raised(exc), old)
        assert old.message == "Encoded failure"
        back = await decoded(converter, old)
        assert isinstance(back, ApplicationError) and back.message == exc.message


async def test_update_refusals_are_readable_only_inside_an_update(
    converter: DataConverter, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusal = ValueError("missing: operator, reason")
    assert is_encrypted(await encoded(converter, refusal))  # a ValueError elsewhere is a library's

    monkeypatch.setattr(fc, "_in_update", lambda: True)
    failure = await encoded(converter, refusal)
    assert failure.message == "missing: operator, reason" and failure.stack_trace == ""
    back = await decoded(converter, failure)
    assert isinstance(back, ApplicationError) and back.type == "ValueError"
    assert back.message == "missing: operator, reason"

    # A misspelt field: pydantic refuses the argument; the refusal names the field, never the value.
    with pytest.raises(pydantic.ValidationError) as info:
        OperatorCancel.model_validate({"operatr": TEST_PHONE, "reason": "x" * 600})
    invalid = info.value
    summary = ("invalid OperatorCancel: reason: String should have at most 500 characters; "
               "operatr: Extra inputs are not permitted")
    assert (await encoded(converter, invalid)).message == summary
    # The same, as the SDK reports it when the worker does not treat ValidationError as a workflow failure.
    try:
        raise RuntimeError("Failed decoding arguments") from invalid
    except RuntimeError as wrapped:
        failure = await encoded(converter, wrapped)
    assert failure.message == f"Failed decoding arguments: {summary}"
    assert failure.cause.message == summary
    assert TEST_PHONE.encode() not in failure.SerializeToString()
    # The workflow's own untyped ApplicationError in an update handler (the audit record failed, say).
    handler = ApplicationError("cancel not applied: the audit record failed (LedgerUnavailable)", non_retryable=True)
    assert (await encoded(converter, handler)).message == handler.message
    unknown = RuntimeError("Update handler for 'cancle' expected but not found, and there is no dynamic handler. "
                           "known updates: [cancel mark_paid retry]")
    assert (await encoded(converter, unknown)).message == str(unknown)

    # Anything else raised during an update is not a refusal.
    for other in (RuntimeError("boom"), KeyError("k"), ArithmeticError("a"), ApplicationError("x", type="Timeout")):
        assert is_encrypted(await encoded(converter, other)), other
    # An untyped ApplicationError that came from a failure (an activity's, re-raised) is not the workflow's words.
    came_back = await decoded(converter, await encoded(converter, ApplicationError("sql said …")))
    assert isinstance(came_back, ApplicationError) and came_back.failure is not None
    assert is_encrypted(await encoded(converter, came_back))
