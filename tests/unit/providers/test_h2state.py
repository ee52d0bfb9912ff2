"""The HTTP/2 client state without a socket: frames in, answers and frames out (pushstream.providers.h2state).

The peer's frames are built with ``h2state.frame`` and jh2's HPACK encoder; what the client writes is split
back into frames by ``frames``. The tokens are plain strings.
"""

from __future__ import annotations

import struct

import pytest
from jh2._hazmat import Decoder, Encoder

from pushstream.providers import h2state as h2
from pushstream.providers.h2state import H2State, Response, StreamLost, StreamUnprocessed

Frame = tuple[int, int, int, bytes]  # type, flags, stream id, payload

REQUEST = [(b":method", b"POST", False), (b":scheme", b"https", False), (b":authority", b"push.test", False),
           (b":path", b"/3/device/abc", True)]


def frames(data: bytes) -> list[Frame]:
    """The frames of what the client wrote (without the preface)."""
    if data.startswith(h2.PREFACE):
        data = data[len(h2.PREFACE):]
    found = []
    while data:
        length = int.from_bytes(data[:3], "big")
        found.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9 : 9 + length]))
        data = data[9 + length :]
    return found


def settings(**values: int) -> bytes:
    codes = {"max_streams": h2.S_MAX_CONCURRENT_STREAMS, "initial_window": h2.S_INITIAL_WINDOW_SIZE,
             "max_frame": h2.S_MAX_FRAME_SIZE}
    return h2.frame(h2.SETTINGS, 0, 0, b"".join(struct.pack(">HI", codes[k], v) for k, v in values.items()))


class Peer:
    """The server side's frames, with its own HPACK encoder (the state decodes every block in order)."""

    def __init__(self) -> None:
        self.encoder = Encoder()

    def headers(self, stream_id: int, status: int = 200, *, end: bool = False, extra: tuple = ()) -> bytes:
        block = self.encoder.encode([(b":status", str(status).encode(), False), *extra])
        return h2.frame(h2.HEADERS, h2.END_HEADERS | (h2.END_STREAM if end else 0), stream_id, block)

    def answer(self, stream_id: int, status: int = 200, body: bytes = b"") -> bytes:
        if not body:
            return self.headers(stream_id, status, end=True)
        return self.headers(stream_id, status) + h2.frame(h2.DATA, h2.END_STREAM, stream_id, body)


def connected(**peer_settings: int) -> H2State:
    """A state past the handshake: its preface written and taken, the peer's SETTINGS received."""
    state = H2State()
    state.initiate()
    assert state.data_to_send().startswith(h2.PREFACE)
    assert state.receive(settings(**peer_settings)) == ()
    assert state.settings_received
    assert frames(state.data_to_send()) == [(h2.SETTINGS, h2.ACK, 0, b"")]
    return state


def sent_streams(data: bytes, ftype: int = h2.HEADERS) -> list[int]:
    return [f[2] for f in frames(data) if f[0] == ftype]


def test_the_handshake_says_no_push_and_opens_the_windows() -> None:
    state = H2State()
    state.initiate()
    out = frames(state.data_to_send())

    assert [f[0] for f in out] == [h2.SETTINGS, h2.WINDOW_UPDATE]
    assert struct.pack(">HI", h2.S_ENABLE_PUSH, 0) in out[0][3]
    assert not state.settings_received and state.max_streams == 1


def test_a_request_goes_out_as_headers_and_data_and_its_answer_comes_back_with_its_token() -> None:
    state = connected(max_streams=100)
    state.submit(REQUEST, b'{"aps":{}}', "t1")
    out = frames(state.data_to_send())
    assert [(f[0], f[1], f[2]) for f in out] == [(h2.HEADERS, h2.END_HEADERS, 1), (h2.DATA, h2.END_STREAM, 1)]
    assert Decoder().decode(out[0][3], raw=True)[3][:2] == (b":path", b"/3/device/abc")
    assert out[1][3] == b'{"aps":{}}'

    [(token, response)] = state.receive(Peer().answer(1, 400, b'{"reason":"BadDeviceToken"}'))

    assert token == "t1" and isinstance(response, Response)
    assert (response.status, response.body) == (400, b'{"reason":"BadDeviceToken"}')
    assert state.streams == {} and state.answered == 2


def test_an_answer_split_at_every_byte_boundary_is_the_same_answer() -> None:
    peer_wire = Peer().headers(1, 200, extra=((b"apns-id", b"abc-1", False),)) + h2.frame(h2.DATA, 0, 1, b"he") \
        + h2.frame(h2.DATA, h2.END_STREAM, 1, b"llo")
    for cut in range(len(peer_wire) + 1):
        state = connected(max_streams=10)
        state.submit(REQUEST, b"", "t")
        first = state.receive(peer_wire[:cut])
        rest = state.receive(peer_wire[cut:])
        [(_, response)] = [*first, *rest]
        assert isinstance(response, Response), cut
        assert (response.status, response.header(b"apns-id"), response.body) == (200, b"abc-1", b"hello")

    state = connected(max_streams=10)
    state.submit(REQUEST, b"", "t")
    ended = [e for byte in range(len(peer_wire)) for e in state.receive(peer_wire[byte : byte + 1])]
    assert [type(outcome) for _, outcome in ended] == [Response]


def test_interleaved_streams_each_get_their_own_headers_and_body() -> None:
    state = connected(max_streams=10)
    for token in ("a", "b", "c"):
        state.submit(REQUEST, b"", token)
    assert sent_streams(state.data_to_send()) == [1, 3, 5]
    peer = Peer()

    ended = state.receive(peer.headers(3, 410) + peer.headers(1, 200) + h2.frame(h2.DATA, 0, 3, b"gone-")
                          + peer.answer(5, 429, b"slow") + h2.frame(h2.DATA, h2.END_STREAM, 1, b"ok")
                          + h2.frame(h2.DATA, h2.END_STREAM, 3, b"for-good"))

    answers = {token: (r.status, r.body) for token, r in ended if isinstance(r, Response)}
    assert answers == {"a": (200, b"ok"), "b": (410, b"gone-for-good"), "c": (429, b"slow")}
    assert [token for token, _ in ended] == ["c", "a", "b"]  # in the order they ended


def test_max_concurrent_streams_queues_requests_and_starts_them_as_others_finish() -> None:
    state = H2State()
    state.initiate()
    state.data_to_send()
    state.submit(REQUEST, b"", "before-settings")  # the default limit is one stream until SETTINGS arrive
    state.submit(REQUEST, b"", "queued-early")
    assert sent_streams(state.data_to_send()) == [1] and len(state.queue) == 1

    state.receive(settings(max_streams=2))
    assert sent_streams(state.data_to_send()) == [3]  # the raise starts the queued one
    for token in ("q1", "q2"):
        state.submit(REQUEST, b"", token)
    assert state.data_to_send() == b"" and [s.token for s in state.queue] == ["q1", "q2"]

    peer = Peer()
    [(token, _)] = state.receive(peer.answer(1))
    assert token == "before-settings" and sent_streams(state.data_to_send()) == [5]
    state.receive(settings(max_streams=1))  # lowered: nothing new until only one stream is left
    [(token, _)] = state.receive(peer.answer(3))
    assert token == "queued-early" and sent_streams(state.data_to_send()) == []
    [(token, _)] = state.receive(peer.answer(5))
    assert token == "q1" and sent_streams(state.data_to_send()) == [7]
    assert state.in_flight == 1


def test_a_body_larger_than_the_window_waits_for_window_update() -> None:
    state = connected(max_streams=10, initial_window=10)
    body = bytes(range(25))
    state.submit(REQUEST, body, "big")
    out = frames(state.data_to_send())
    assert [(f[0], f[1]) for f in out] == [(h2.HEADERS, h2.END_HEADERS), (h2.DATA, 0)]
    assert out[1][3] == body[:10]

    state.receive(h2.frame(h2.WINDOW_UPDATE, 0, 1, struct.pack(">I", 4)))
    assert [(f[1], f[3]) for f in frames(state.data_to_send())] == [(0, body[10:14])]
    state.receive(h2.frame(h2.WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)))
    assert [(f[1], f[3]) for f in frames(state.data_to_send())] == [(h2.END_STREAM, body[14:])]


def test_the_connection_window_holds_every_stream_and_window_update_on_stream_0_releases_them() -> None:
    state = connected(max_streams=10)
    state.send_window = 5  # as if 65530 bytes had been sent already
    state.submit(REQUEST, b"x" * 8, "one")
    state.submit(REQUEST, b"y" * 4, "two")
    assert [(f[2], f[3]) for f in frames(state.data_to_send()) if f[0] == h2.DATA] == [(1, b"xxxxx")]

    state.receive(h2.frame(h2.WINDOW_UPDATE, 0, 0, struct.pack(">I", 100)))

    data = [(f[2], f[1], f[3]) for f in frames(state.data_to_send()) if f[0] == h2.DATA]
    assert data == [(1, h2.END_STREAM, b"xxx"), (3, h2.END_STREAM, b"yyyy")]  # in the order they blocked


def test_a_smaller_initial_window_from_settings_applies_to_open_streams() -> None:
    state = connected(max_streams=10, initial_window=4)
    state.submit(REQUEST, b"abcdefgh", "s")
    assert [f[3] for f in frames(state.data_to_send()) if f[0] == h2.DATA] == [b"abcd"]

    state.receive(settings(initial_window=8))  # +4 for the open stream

    assert [f[3] for f in frames(state.data_to_send()) if f[0] == h2.DATA] == [b"efgh"]


def test_goaway_fails_streams_above_last_stream_id_as_unprocessed_and_answers_the_others() -> None:
    state = connected(max_streams=3)
    for token in ("s1", "s3", "s5", "queued"):
        state.submit(REQUEST, b"", token)
    state.data_to_send()
    peer = Peer()

    ended = state.receive(h2.frame(h2.GOAWAY, 0, 0, struct.pack(">II", 3, h2.NO_ERROR) + b"shutting down"))

    assert {token: type(outcome) for token, outcome in ended} == {"s5": StreamUnprocessed,
                                                                  "queued": StreamUnprocessed}
    assert state.going_away and state.goaway == (3, h2.NO_ERROR, b"shutting down")
    assert not state.closing and sorted(state.streams) == [1, 3]

    [(token, response)] = state.receive(peer.answer(3, 200))
    assert token == "s3" and isinstance(response, Response) and not state.closing
    [(token, response)] = state.receive(peer.answer(1, 200))
    assert token == "s1" and isinstance(response, Response)
    assert state.closing  # idle after GOAWAY: we say GOAWAY too and the socket can close
    assert [f[0] for f in frames(state.data_to_send())] == [h2.GOAWAY]


def test_goaway_with_nothing_left_closes_at_once() -> None:
    state = connected(max_streams=3)
    state.submit(REQUEST, b"", "s1")
    state.data_to_send()

    [(token, outcome)] = state.receive(h2.frame(h2.GOAWAY, 0, 0, struct.pack(">II", 0, 2)))

    assert token == "s1" and isinstance(outcome, StreamUnprocessed) and "last_stream_id=0" in str(outcome)
    assert state.closing


@pytest.mark.parametrize(("code", "expected"), [(h2.REFUSED_STREAM, StreamUnprocessed), (h2.CANCEL, StreamLost),
                                                (0x2, StreamLost)])
def test_rst_stream_ends_only_its_stream(code: int, expected: type) -> None:
    state = connected(max_streams=1)
    state.submit(REQUEST, b"", "reset")
    state.submit(REQUEST, b"", "next")
    state.data_to_send()

    [(token, outcome)] = state.receive(h2.frame(h2.RST_STREAM, 0, 1, struct.pack(">I", code)))

    assert token == "reset" and type(outcome) is expected
    assert sent_streams(state.data_to_send()) == [3]  # the freed slot starts the queued request
    assert not state.going_away


def test_ping_is_answered_with_its_payload_and_a_ping_ack_is_not() -> None:
    state = connected()

    state.receive(h2.frame(h2.PING, 0, 0, b"12345678") + h2.frame(h2.PING, h2.ACK, 0, b"87654321"))

    assert frames(state.data_to_send()) == [(h2.PING, h2.ACK, 0, b"12345678")]


def test_padded_and_prioritised_frames_are_unwrapped() -> None:
    state = connected(max_streams=10)
    state.submit(REQUEST, b"", "p")
    block = Encoder().encode([(b":status", b"503", False)])
    priority = struct.pack(">IB", 0, 15)
    headers = h2.frame(h2.HEADERS, h2.END_HEADERS | h2.PADDED | h2.PRIORITY_FLAG, 1,
                       bytes([3]) + priority + block + b"\0\0\0")
    data = h2.frame(h2.DATA, h2.END_STREAM | h2.PADDED, 1, bytes([5]) + b"busy" + b"\0" * 5)

    [(_, response)] = state.receive(headers + data)

    assert isinstance(response, Response) and (response.status, response.body) == (503, b"busy")


def test_a_header_block_in_continuation_frames_and_informational_answers() -> None:
    state = connected(max_streams=10)
    state.submit(REQUEST, b"", "c")
    encoder = Encoder()
    informational = h2.frame(h2.HEADERS, h2.END_HEADERS, 1, encoder.encode([(b":status", b"100", False)]))
    block = encoder.encode([(b":status", b"200", False), (b"retry-after", b"30", False)])
    split = (h2.frame(h2.HEADERS, h2.END_STREAM, 1, block[:3]) + h2.frame(h2.CONTINUATION, 0, 1, block[3:5])
             + h2.frame(h2.CONTINUATION, h2.END_HEADERS, 1, block[5:]))

    [(_, response)] = state.receive(informational + split)

    assert isinstance(response, Response) and response.status == 200 and response.headers == [(b"retry-after", b"30")]


@pytest.mark.parametrize(("wire", "code"), [
    (h2.frame(h2.DATA, 0, 7, b"x"), h2.PROTOCOL_ERROR),  # a stream never opened (idle)
    (h2.frame(h2.DATA, 0, 2, b"x"), h2.PROTOCOL_ERROR),  # an even (server-initiated) stream
    (h2.frame(h2.DATA, 0, 0, b"x"), h2.PROTOCOL_ERROR),
    (h2.frame(h2.SETTINGS, 0, 0, b"\0\3\0\0"), h2.FRAME_SIZE_ERROR),
    (h2.frame(h2.WINDOW_UPDATE, 0, 0, b"\0\0\1"), h2.FRAME_SIZE_ERROR),
    (h2.frame(h2.WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)), h2.PROTOCOL_ERROR),
    (h2.frame(h2.WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1)), h2.FLOW_CONTROL_ERROR),
    (h2.frame(h2.GOAWAY, 0, 0, b"\0\0\0\1"), h2.FRAME_SIZE_ERROR),
    (h2.frame(h2.DATA, h2.PADDED, 1, bytes([9]) + b"ab"), h2.PROTOCOL_ERROR),
    (h2.frame(h2.PUSH_PROMISE, h2.END_HEADERS, 1, b"\0\0\0\2"), h2.PROTOCOL_ERROR),
    (h2.frame(h2.CONTINUATION, h2.END_HEADERS, 1, b""), h2.PROTOCOL_ERROR),
    (h2.frame(h2.HEADERS, h2.END_HEADERS, 1, b"\xff\xff\xff\xff"), h2.COMPRESSION_ERROR),
    (settings(max_frame=100), h2.PROTOCOL_ERROR),
    (settings(initial_window=2**31), h2.FLOW_CONTROL_ERROR),
])
def test_a_protocol_error_ends_the_connection_with_goaway_and_its_code(wire: bytes, code: int) -> None:
    state = connected(max_streams=10)
    state.submit(REQUEST, b"", "in-flight")
    state.data_to_send()

    assert state.receive(wire + h2.frame(h2.PING, 0, 0, b"ignored!")) == ()

    assert state.error is not None and state.error.code == code
    assert state.closing and state.going_away
    [(ftype, _, _, payload)] = frames(state.data_to_send())  # nothing after the bad frame is processed
    assert ftype == h2.GOAWAY and struct.unpack(">II", payload[:8]) == (0, code)
    [(token, outcome)] = state.connection_lost("closed")  # the request in flight is ambiguous
    assert token == "in-flight" and isinstance(outcome, StreamLost)


def test_late_data_on_a_stream_we_reset_is_ignored() -> None:
    state = connected(max_streams=10)
    stream = state.submit(REQUEST, b"", "gave-up")
    state.data_to_send()
    state.cancel(stream)
    assert frames(state.data_to_send()) == [(h2.RST_STREAM, 0, 1, struct.pack(">I", h2.CANCEL))]

    assert state.receive(Peer().answer(1, 200, b"late")) == ()
    assert state.error is None


def test_cancelled_and_abandoned_queued_requests_never_start() -> None:
    gave_up = {"abandoned"}
    state = H2State(abandoned=gave_up.__contains__)
    state.initiate()
    state.receive(settings(max_streams=1))
    state.data_to_send()
    state.submit(REQUEST, b"", "running")
    cancelled = state.submit(REQUEST, b"", "cancelled")
    state.submit(REQUEST, b"", "abandoned")
    state.submit(REQUEST, b"", "waiting")
    state.cancel(cancelled)
    assert sent_streams(state.data_to_send()) == [1]

    state.receive(Peer().answer(1))

    assert sent_streams(state.data_to_send()) == [3] and [s.token for s in state.streams.values()] == ["waiting"]


def test_retire_fails_the_queue_and_closes_when_the_started_streams_are_answered() -> None:
    state = connected(max_streams=1)
    state.submit(REQUEST, b"", "started")
    state.submit(REQUEST, b"", "queued")
    state.data_to_send()

    state.retire()
    [(token, outcome)] = state.take_ended()
    assert token == "queued" and isinstance(outcome, StreamUnprocessed) and not state.closing

    state.receive(Peer().answer(1))
    assert state.closing and [f[0] for f in frames(state.data_to_send())] == [h2.GOAWAY]


def test_connection_lost_loses_the_started_and_leaves_the_queued_unprocessed() -> None:
    state = connected(max_streams=1)
    state.submit(REQUEST, b"", "started")
    state.submit(REQUEST, b"", "queued")

    ended = dict(state.connection_lost("reset by peer"))

    assert type(ended["started"]) is StreamLost and type(ended["queued"]) is StreamUnprocessed
    assert state.data_to_send() == b"" and state.in_flight == 0


def test_when_stream_ids_run_out_the_request_is_unprocessed_and_the_connection_retires() -> None:
    state = connected(max_streams=10)
    state._next_id = h2.MAX_STREAM_ID + 2  # as after 2**30 requests

    state.submit(REQUEST, b"", "one-too-many")

    [(token, outcome)] = state.take_ended()
    assert token == "one-too-many" and isinstance(outcome, StreamUnprocessed) and state.going_away
    assert state.closing  # nothing was in flight
