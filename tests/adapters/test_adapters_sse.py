"""The SSE decoder: events come out the same however the bytes are split."""

from __future__ import annotations

from adapter_helpers import recording
from hypothesis import given
from hypothesis import strategies as st

from adapters.sse import SSEParser, aiter_sse


def feed_all(pieces: list[bytes]) -> list[tuple[str, bytes]]:
    parser = SSEParser()
    events: list[tuple[str, bytes]] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return events


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(raw)})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


STREAM = (
    b": this is a comment\n"
    b"event: message_start\n"
    b'data: {"a": 1}\n'
    b"\n"
    b"data: line one\n"
    b"data: line two\n"
    b"\n"
    b"id: 7\n"
    b"retry: 1000\n"
    b"data:no-space\n"
    b"\n"
    b"event: ping\n"
    b"data: {}\n"
    b"\n"
)
EXPECTED = [
    ("message_start", b'{"a": 1}'),
    ("message", b"line one\nline two"),
    ("message", b"no-space"),
    ("ping", b"{}"),
]


def test_events_fields_comments_and_multiline_data():
    assert feed_all([STREAM]) == EXPECTED


def test_every_single_byte_split_gives_the_same_events():
    assert feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_crlf_line_endings_including_cr_and_lf_in_different_chunks():
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert feed_all([crlf]) == EXPECTED
    # cut every CRLF between its CR and its LF
    pieces = crlf.split(b"\n")
    assert feed_all([p + b"\n" if i < len(pieces) - 1 else p for i, p in enumerate(pieces)]) == (
        EXPECTED
    )
    assert feed_all([crlf[i : i + 1] for i in range(len(crlf))]) == EXPECTED


def test_bare_cr_line_endings():
    assert feed_all([STREAM.replace(b"\n", b"\r")]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts):
    assert feed_all(split_at(STREAM, cuts)) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_recorded_gemini_stream_any_split(cuts):
    raw = recording("google_stream.sse")  # CRLF-terminated, like Gemini's
    whole = feed_all([raw])
    assert len(whole) == 3
    assert feed_all(split_at(raw, cuts)) == whole


def test_event_without_terminating_blank_line_is_not_dispatched():
    assert feed_all([b"data: complete\n\n", b'data: {"cut": tr']) == [("message", b"complete")]
    assert feed_all([b"data: no blank line\n"]) == []


def test_leading_bom_is_ignored():
    assert feed_all([b"\xef\xbb\xbfdata: x\n\n"]) == [("message", b"x")]


def test_data_field_without_colon_is_an_empty_line_of_data():
    assert feed_all([b"data\ndata: b\n\n"]) == [("message", b"\nb")]


def test_event_with_no_data_is_not_dispatched_and_its_type_is_reset():
    assert feed_all([b"event: lonely\n\ndata: x\n\n"]) == [("message", b"x")]


def test_unknown_fields_resembling_data_are_ignored():
    assert feed_all([b"database: nope\ndata: yes\n\n"]) == [("message", b"yes")]


def test_extra_blank_lines_between_events():
    assert feed_all([b"\n\n\ndata: a\n\n\n\ndata: b\n\n"]) == [("message", b"a"), ("message", b"b")]


async def test_aiter_sse_over_async_chunks():
    async def chunks():
        yield b"event: x\nda"
        yield b"ta: 1\n"
        yield b"\n"

    assert [item async for item in aiter_sse(chunks())] == [("x", b"1")]


def test_cr_ending_the_last_chunk_dispatches_at_once_and_a_following_lf_is_swallowed():
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == [("message", b"a")]
    assert parser.feed(b"\ndata: b\r\n\r\n") == [("message", b"b")]
    assert parser.feed(b"") == []
