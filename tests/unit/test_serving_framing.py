"""Where the serving worker decides a buffered request is complete (otc_bridge/serving/framing.py)."""

from __future__ import annotations

import pytest

from otc_bridge.serving.framing import HANDOVER, WAITING, Framer, Limits, Scan, scan

LIMITS = Limits(request_line=100, head=400, body=50)
HEAD = b"POST /api/orders HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("data", [
    b"",
    b"GET /api/stats HTTP/1.1\r\nHost: x\r\n",
    b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r",
    b"\r\nGET / HTTP/1.1\r\n",
])
def test_an_unfinished_head_waits(data):
    assert scan(data, LIMITS) == WAITING


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",  # one empty line may come first
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\n",  # a pipelined request behind it
    HEAD + b"Content-Length: 5\r\n\r\nhello",
    HEAD + b"content-length:  5 \r\n\r\nhello and more",
    HEAD + b"Content-Length: 0\r\n\r\n",
])
def test_a_whole_request_is_handed_over(data):
    assert scan(data, LIMITS) == HANDOVER


def test_a_body_is_waited_for_after_the_head():
    assert scan(HEAD + b"Content-Length: 5\r\n\r\nhel", LIMITS) == Scan(head_done=True)
    expecting = HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    assert scan(expecting, LIMITS) == Scan(head_done=True, expects_continue=True)
    assert not scan(expecting.replace(b"HTTP/1.1", b"HTTP/1.0"), LIMITS).expects_continue


@pytest.mark.parametrize(("data", "status"), [
    (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /" + b"a" * 100, 414),  # known before the line ends
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 70, 431),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 70 + b"\r\n", 431),
    (HEAD + b"Content-Length: 51\r\n\r\n", 413),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n20\r\n" + b"a" * 32 + b"\r\n20\r\n", 413),
])
def test_what_is_over_a_limit_is_refused_at_once(data, status):
    assert scan(data, LIMITS).error[0] == status


def test_chunked_bodies_end_at_the_last_chunk_and_its_trailers():
    chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    assert scan(chunked, LIMITS) == Scan(head_done=True)
    assert scan(chunked + b"5\r\nhel", LIMITS) == Scan(head_done=True)
    assert scan(chunked + b"5;ext=1\r\nhello\r\n", LIMITS) == Scan(head_done=True)
    assert scan(chunked + b"5\r\nhello\r\n0\r\n", LIMITS) == Scan(head_done=True)
    assert scan(chunked + b"5\r\nhello\r\n0\r\n\r\n", LIMITS) == HANDOVER
    assert scan(chunked + b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n", LIMITS) == Scan(head_done=True)
    assert scan(chunked + b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", LIMITS) == HANDOVER


@pytest.mark.parametrize("data", [
    HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
    HEAD + b"Content-Length: -1\r\n\r\n",
    HEAD + b"Content-Length: 0x10\r\n\r\n",
    HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    HEAD + b"Transfer-Encoding: gzip\r\n\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\n",
])
def test_framing_it_cannot_read_goes_to_the_parser_at_once(data):
    """gunicorn's parser answers these (400, 501) without waiting on the socket."""
    assert scan(data, LIMITS) == HANDOVER


@pytest.mark.parametrize("data", [
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n",
    b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 70 + b"\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 60,
])
def test_a_request_fed_a_byte_at_a_time_gets_the_same_verdict(data):
    framer, verdicts = Framer(LIMITS), []
    for end in range(1, len(data) + 1):
        verdicts.append(framer.update(data[:end]))
        if verdicts[-1].complete or verdicts[-1].error:
            break
    assert verdicts[-1] == scan(data[:end], LIMITS)
    assert end == len(data) or verdicts[-1].error  # not decided before its last byte


def test_tiny_chunks_cannot_make_the_framing_large():
    """Framing may take as much again as the body, plus 1 KiB: 40 bytes of data in 2.3 KB is refused."""
    many = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + (b"1;" + b"e" * 50 + b"\r\na\r\n") * 40
    assert scan(many, Limits(request_line=100, head=400, body=100)).error[0] == 413
