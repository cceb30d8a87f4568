"""rabbit/frames.py without a broker: a content header the client cannot decode is read as far as it
can be, the rest of its properties kept and the broken ones named; a sound one is untouched; a frame
whose layout cannot be read still fails (nothing is invented)."""

from __future__ import annotations

import struct

import pytest
from pamqp import commands, exceptions, frame
from pamqp.header import ContentHeader

from rabbit import frames
from tests.rabbit.hostile import header_name_not_utf8, headers_nested, timestamp_past_year_9999

frames.install()


def delivered(properties_wire: bytes, body_size: int = 42) -> ContentHeader:
    """The content header frame as the broker sends it, read back the way the connection reads it."""
    payload = struct.pack(">HHQ", 60, 0, body_size) + properties_wire
    raw = struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce"  # a header frame on channel 1
    _, _, header = frame.unmarshal(raw)
    assert isinstance(header, ContentHeader)
    return header


@pytest.mark.parametrize(("build", "said"), [
    (header_name_not_utf8, "headers: text that is not UTF-8"),
    (lambda mid: headers_nested(3000, mid), "headers: nested too deeply"),
    (timestamp_past_year_9999, "timestamp: a time out of range"),
])
def test_what_cannot_be_decoded_is_named_and_the_rest_is_kept(build: object, said: str) -> None:
    header = delivered(build("mid-7").marshal())  # type: ignore[operator]

    assert header.body_size == 42
    props = header.properties
    assert (props.content_type, props.message_id, props.delivery_mode) == ("application/json", "mid-7", 2)
    assert frames.undecodable(props.headers) == said


def test_a_sound_header_is_untouched() -> None:
    wire = commands.Basic.Properties(message_id="m-1", headers={"x-a": "b"}, delivery_mode=2).marshal()
    header = delivered(wire)
    assert header.properties.headers == {"x-a": "b"} and frames.undecodable(header.properties.headers) is None


def test_a_frame_whose_layout_cannot_be_read_still_fails() -> None:
    with pytest.raises(exceptions.UnmarshalingException):
        delivered(b"\x20")  # property flags cut short
