"""Framing and encoding of the wire protocol (docs/PROTOCOL.md, sections 2, 3 and 10).

A frame is a 4-byte big-endian length followed by one msgpack map. The `msgpack` package is
used when it is installed; otherwise a small built-in codec covers the subset the protocol
uses (nil, bool, int, str, bin, array, map, float), so an interpreter without msgpack (any
virtualenv the root's PYTHONPATH reaches) can still debug. Both produce the golden bytes.
"""

import socket
import struct

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20
AGENT = "actor-tui-python 0.1.0"

try:
    import msgpack as _msgpack

    # msgpack before 1.0 has no strict_map_key (and accepts any key anyway).
    _UNPACK_KW = {"raw": False}
    if getattr(_msgpack, "version", (0,)) >= (1, 0):
        _UNPACK_KW["strict_map_key"] = False
except ImportError:  # the built-in codec below takes over
    _msgpack = None


class FrameError(Exception):
    """A frame that cannot be read, written or understood. The connection is unusable."""


# ---- built-in codec ------------------------------------------------------------------------


def _pack_into(out, obj):
    if obj is None:
        out.append(b"\xc0")
    elif obj is True:
        out.append(b"\xc3")
    elif obj is False:
        out.append(b"\xc2")
    elif isinstance(obj, int):
        _pack_int(out, obj)
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        n = len(data)
        if n < 32:
            out.append(bytes([0xA0 | n]))
        elif n < 0x100:
            out.append(b"\xd9" + bytes([n]))
        elif n < 0x10000:
            out.append(b"\xda" + struct.pack(">H", n))
        else:
            out.append(b"\xdb" + struct.pack(">I", n))
        out.append(data)
    elif isinstance(obj, (bytes, bytearray)):
        n = len(obj)
        if n < 0x100:
            out.append(b"\xc4" + bytes([n]))
        elif n < 0x10000:
            out.append(b"\xc5" + struct.pack(">H", n))
        else:
            out.append(b"\xc6" + struct.pack(">I", n))
        out.append(bytes(obj))
    elif isinstance(obj, float):
        out.append(b"\xcb" + struct.pack(">d", obj))
    elif isinstance(obj, (list, tuple)):
        n = len(obj)
        if n < 16:
            out.append(bytes([0x90 | n]))
        elif n < 0x10000:
            out.append(b"\xdc" + struct.pack(">H", n))
        else:
            out.append(b"\xdd" + struct.pack(">I", n))
        for item in obj:
            _pack_into(out, item)
    elif isinstance(obj, dict):
        n = len(obj)
        if n < 16:
            out.append(bytes([0x80 | n]))
        elif n < 0x10000:
            out.append(b"\xde" + struct.pack(">H", n))
        else:
            out.append(b"\xdf" + struct.pack(">I", n))
        for key, value in obj.items():
            _pack_into(out, key)
            _pack_into(out, value)
    else:
        raise TypeError("cannot encode %r" % type(obj).__name__)


def _pack_int(out, n):
    # Smallest encoding, like rmp-serde and msgpack-python: the golden bytes depend on it.
    if 0 <= n < 0x80:
        out.append(bytes([n]))
    elif -32 <= n < 0:
        out.append(struct.pack(">b", n))
    elif n >= 0:
        for tag, fmt, limit in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16),
                                (0xCE, ">I", 1 << 32), (0xCF, ">Q", 1 << 64)):
            if n < limit:
                out.append(bytes([tag]) + struct.pack(fmt, n))
                return
        raise OverflowError("integer too large for msgpack")
    else:
        for tag, fmt, limit in ((0xD0, ">b", 1 << 7), (0xD1, ">h", 1 << 15),
                                (0xD2, ">i", 1 << 31), (0xD3, ">q", 1 << 63)):
            if n >= -limit:
                out.append(bytes([tag]) + struct.pack(fmt, n))
                return
        raise OverflowError("integer too small for msgpack")


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        end = self.pos + n
        if end > len(self.data):
            raise FrameError("truncated msgpack value")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def unpack(self, fmt, n):
        return struct.unpack(fmt, self.take(n))[0]


_FIXED = {
    0xCA: (">f", 4), 0xCB: (">d", 8),
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
}


def _unpack_one(r, depth=0):
    if depth > 64:
        raise FrameError("msgpack value nested too deeply")
    tag = r.take(1)[0]
    if tag < 0x80:
        return tag
    if tag >= 0xE0:
        return tag - 0x100
    if 0x80 <= tag <= 0x8F:
        return _unpack_map(r, tag & 0x0F, depth)
    if 0x90 <= tag <= 0x9F:
        return [_unpack_one(r, depth + 1) for _ in range(tag & 0x0F)]
    if 0xA0 <= tag <= 0xBF:
        return _utf8(r.take(tag & 0x1F))
    if tag == 0xC0:
        return None
    if tag == 0xC2:
        return False
    if tag == 0xC3:
        return True
    if tag in _FIXED:
        fmt, n = _FIXED[tag]
        return r.unpack(fmt, n)
    if tag in (0xC4, 0xC5, 0xC6):
        return bytes(r.take(_length(r, tag - 0xC4)))
    if tag in (0xD9, 0xDA, 0xDB):
        return _utf8(r.take(_length(r, tag - 0xD9)))
    if tag in (0xDC, 0xDD):
        return [_unpack_one(r, depth + 1) for _ in range(_length(r, tag - 0xDC + 1))]
    if tag in (0xDE, 0xDF):
        return _unpack_map(r, _length(r, tag - 0xDE + 1), depth)
    if tag in (0xC7, 0xC8, 0xC9):  # ext: skipped, the protocol has none
        n = _length(r, tag - 0xC7)
        r.take(1 + n)
        return None
    if 0xD4 <= tag <= 0xD8:  # fixext
        r.take(1 + (1 << (tag - 0xD4)))
        return None
    raise FrameError("invalid msgpack tag 0x%02x" % tag)


def _length(r, size_index):
    fmt, n = ((">B", 1), (">H", 2), (">I", 4))[size_index]
    return r.unpack(fmt, n)


def _unpack_map(r, n, depth):
    out = {}
    for _ in range(n):
        key = _unpack_one(r, depth + 1)
        if isinstance(key, list):
            raise FrameError("unhashable msgpack map key")
        out[key] = _unpack_one(r, depth + 1)
    return out


def _utf8(raw):
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise FrameError("invalid UTF-8 in msgpack str: %s" % e)


# ---- public ------------------------------------------------------------------------------


def pack(msg):
    """Encodes one message (a dict) as msgpack, strings as msgpack str."""
    if _msgpack is not None:
        return _msgpack.packb(msg, use_bin_type=True)
    out = []
    _pack_into(out, msg)
    return b"".join(out)


def unpack(payload):
    """Decodes one msgpack value; FrameError if it is not exactly one valid value."""
    if _msgpack is not None:
        try:
            return _msgpack.unpackb(payload, **_UNPACK_KW)
        except Exception as e:  # msgpack raises several unrelated types
            raise FrameError("undecodable frame: %s" % e)
    r = _Reader(payload)
    value = _unpack_one(r)
    if r.pos != len(payload):
        raise FrameError("trailing bytes after the msgpack value")
    return value


def frame(msg):
    """One complete frame: length prefix and payload."""
    payload = pack(msg)
    if len(payload) > MAX_FRAME:
        raise FrameError("frame of %d bytes exceeds the maximum" % len(payload))
    return struct.pack(">I", len(payload)) + payload


class FrameReader(object):
    """Reads frames from a socket through a buffer. Frames that arrived together are decoded
    without another recv() in between: the reader thread keeps the GIL across them, so a
    `cancel` sent right after a `lock_refused` is handled before the woken thread runs on.
    `exact`: never read past the current frame (for the handshake, before the buffered
    reader takes over the socket)."""

    def __init__(self, sock, exact=False):
        self._sock = sock
        self._exact = exact
        self._buf = bytearray()

    def _fill(self, n):
        while len(self._buf) < n:
            chunk = self._sock.recv(n - len(self._buf) if self._exact else 1 << 16)
            if not chunk:
                return False
            self._buf += chunk
        return True

    def read(self):
        """One frame. None at a clean end of stream (also inside the length prefix, as the
        root does); FrameError for an oversized, truncated or malformed frame."""
        if not self._fill(4):
            return None
        (n,) = struct.unpack(">I", bytes(self._buf[:4]))
        if n > MAX_FRAME:
            raise FrameError("oversized frame (%d bytes)" % n)
        if not self._fill(4 + n):
            raise FrameError("connection closed in the middle of a frame")
        payload = bytes(self._buf[4:4 + n])
        del self._buf[:4 + n]
        msg = unpack(payload)
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise FrameError("frame is not a map with a string `type`")
        return msg


def read_frame(sock):
    """Reads exactly one frame and nothing after it."""
    return FrameReader(sock, exact=True).read()


def connect_unix(path, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock
