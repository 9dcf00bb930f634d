"""Where an HTTP/1.x request ends in the bytes received so far, without parsing it fully.

The serving worker buffers each request in its event loop until a :class:`Framer` says it
is complete (head, then body by ``Content-Length`` or chunked framing) and only then gives
it to a thread, so a slow or idle client never holds one. The framer checks only what the
buffering needs: sizes, and where the message ends. Anything it cannot frame (a malformed
length, an unknown transfer coding, two lengths) is handed over as complete, and gunicorn's
parser answers it (400, 501) without waiting on the socket.
"""

from __future__ import annotations

from dataclasses import dataclass

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
_HEX = b"0123456789abcdefABCDEF"


@dataclass(frozen=True)
class Limits:
    """Sizes in bytes: the request line, the whole head (request line + fields), the body."""

    request_line: int = 8190
    head: int = 32 * 1024
    body: int = 64 * 1024


@dataclass(frozen=True)
class Scan:
    """The verdict on a buffer: ``complete`` (hand it to a thread), or ``error`` (a status
    and message to answer at once, then close), or neither (wait for more bytes).
    ``head_done``: the head is complete (the body's deadline applies from then on);
    ``expects_continue``: the client waits for ``100 Continue`` before sending the body."""

    complete: bool = False
    head_done: bool = False
    error: tuple[int, str] | None = None
    expects_continue: bool = False


WAITING = Scan()
HANDOVER = Scan(complete=True, head_done=True)
BODY_WAITING = Scan(head_done=True)


def scan(buf: bytes | bytearray, limits: Limits) -> Scan:
    """Classify ``buf``, the bytes received for one request (and maybe more after it)."""
    return Framer(limits).update(buf)


class Framer:
    """:func:`scan` for a buffer that grows: call :meth:`update` after each append. Each
    call looks only at the new bytes (plus a few before them), so a client sending a byte
    at a time costs each byte once, not the whole buffer again."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.checked = 0  # bytes already searched for the end of the request line and the head
        self.line_end: int | None = None
        self.head_end: int | None = None
        self.body_end: int | None = None  # Content-Length framing
        self.chunk_at: int | None = None  # chunked framing: where the next chunk-size line starts
        self.chunk_total = 0
        self.last_chunk: int | None = None  # the zero-size line's CRLF, once read
        self.trailers_checked = 0
        self.expects_continue = False

    def update(self, buf: bytes | bytearray) -> Scan:
        if self.head_end is None:
            verdict = self._head(buf)
            if verdict is not None:
                return verdict
        if self.body_end is not None:
            return HANDOVER if len(buf) >= self.body_end else Scan(head_done=True,
                                                                  expects_continue=self.expects_continue)
        return self._chunks(buf)

    def _head(self, buf: bytes | bytearray) -> Scan | None:
        """The verdict while the head is incomplete, or None once it is (body framing set)."""
        limits = self.limits
        start = 2 if buf[:2] == CRLF else 0  # RFC 9112 §2.2: one empty line may precede a request
        if self.line_end is None:
            found = buf.find(CRLF, max(start, self.checked - 1))
            self.line_end = found if found >= 0 else None
        line_length = (len(buf) if self.line_end is None else self.line_end) - start
        if line_length > limits.request_line:
            return Scan(error=(414, f"Request line too long (limit {limits.request_line} bytes)"))
        found = buf.find(HEAD_END, max(start, self.checked - 3))
        self.checked = len(buf)
        if found < 0:
            if len(buf) - start > limits.head:
                return Scan(error=(431, f"Request header fields too large (limit {limits.head} bytes)"))
            return WAITING
        head_end = found + len(HEAD_END)
        if head_end - start > limits.head:
            return Scan(error=(431, f"Request header fields too large (limit {limits.head} bytes)"))
        self.head_end = head_end
        fields = _fields(bytes(buf[self.line_end + 2:found]))
        lengths, codings = fields.get(b"content-length", []), fields.get(b"transfer-encoding", [])
        if codings:
            if lengths or [c.strip().lower() for c in b",".join(codings).split(b",")] != [b"chunked"]:
                return HANDOVER  # ambiguous or unsupported framing: the parser refuses it
            self.chunk_at = head_end
            return None
        if not lengths:
            return HANDOVER  # no body
        if len(lengths) > 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
            return HANDOVER  # the parser answers 400
        length = int(lengths[0])
        if length > limits.body:
            return Scan(error=(413, f"Request body too large (limit {limits.body} bytes)"))
        self.body_end = head_end + length
        line = bytes(buf[start:self.line_end]).rstrip()
        self.expects_continue = line.endswith(b"HTTP/1.1") and [v.lower() for v in fields.get(b"expect", [])] == [
            b"100-continue"]
        return None

    def _chunks(self, buf: bytes | bytearray) -> Scan:
        """Walk the chunks received so far: complete at the last chunk's trailer section."""
        limits = self.limits
        too_large = Scan(error=(413, f"Request body too large (limit {limits.body} bytes)"))
        while self.last_chunk is None:
            at = self.chunk_at
            end_of_size = buf.find(CRLF, at, at + 1024)  # a size line is short
            if end_of_size < 0:
                return BODY_WAITING if len(buf) - at <= 1024 else HANDOVER
            size_text = bytes(buf[at:end_of_size]).split(b";", 1)[0].rstrip(b" \t")
            if not size_text or len(size_text) > 16 or size_text.strip(_HEX):
                return HANDOVER  # the parser answers 400
            size = int(size_text, 16)
            if size == 0:
                self.last_chunk = end_of_size
                break
            self.chunk_total += size
            self.chunk_at = end_of_size + 2 + size + 2
            # The data, and the framing around it (many tiny chunks): both bounded.
            if self.chunk_total > limits.body or self.chunk_at - self.head_end > 2 * limits.body + 1024:
                return too_large
            if len(buf) < self.chunk_at:
                return BODY_WAITING
        trailers_end = buf.find(HEAD_END, max(self.last_chunk, self.trailers_checked - 3))
        self.trailers_checked = len(buf)
        if trailers_end >= 0:
            return HANDOVER
        return BODY_WAITING if len(buf) - self.last_chunk <= limits.head else HANDOVER


def _fields(block: bytes) -> dict[bytes, list[bytes]]:
    """Header fields by lower-cased name, values stripped (only those the framing needs
    are looked at)."""
    found: dict[bytes, list[bytes]] = {}
    for line in block.split(CRLF):
        name, colon, value = line.partition(b":")
        if colon:
            found.setdefault(name.strip().lower(), []).append(value.strip())
    return found
