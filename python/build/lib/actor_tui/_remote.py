"""Remote links (docs/PROTOCOL.md section 13): a process on another host reaches a root
started with `--listen` through the ticket in ACTOR_TUI_TICKET.

TLS 1.3 with the root's certificate pinned by the ticket's SHA-256 fingerprint, then the
proof of the ticket's secret: an HMAC over the root's nonce, bound to the root's certificate
(`server_cert`: Python's ssl module cannot export keying material). One thread owns the TLS
socket and carries bytes between it and one end of a socket pair; the client uses the other
end exactly as it uses the root's Unix socket. (OpenSSL objects must not be read and written
from two threads at once, which is what the client's reader and its pausing threads would
otherwise do.)
"""

import hashlib
import hmac
import os
import select
import socket
import ssl
import threading

from . import _wire

TICKET_ENV = "ACTOR_TUI_TICKET"
SERVER_NAME = "actor-tui"
HANDSHAKE_TIMEOUT = 10.0
# Bytes held in either direction before the pump stops reading that side.
_PUMP_LIMIT = 4 << 20


class TicketError(ValueError):
    pass


class Ticket(object):
    def __init__(self, kind, fingerprint, secret, host, port):
        self.kind, self.fingerprint, self.secret = kind, fingerprint, secret
        self.host, self.port = host, port


def _unhex32(s):
    if len(s) != 64:
        raise TicketError("a fingerprint or secret is not 64 hex digits")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise TicketError("a fingerprint or secret is not hex")


def parse_ticket(text):
    text = text.strip()
    prefix = "actor-tui:1:"
    if not text.startswith(prefix):
        raise TicketError("it does not start with %s" % prefix)
    head, sep, addr = text[len(prefix):].rpartition("@")
    if not sep:
        raise TicketError("no @HOST:PORT")
    parts = head.split(":")
    if len(parts) != 3 or parts[0] not in ("actor", "observer", "driver"):
        raise TicketError("not KIND:FINGERPRINT:SECRET")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise TicketError("bad address %r" % addr)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Ticket(parts[0], _unhex32(parts[1]), _unhex32(parts[2]), host, int(port))


def ticket_from_env():
    """The ticket in ACTOR_TUI_TICKET (itself, or a file holding it); None if unset."""
    value = os.environ.get(TICKET_ENV)
    if not value:
        return None
    if value.startswith("actor-tui:"):
        return parse_ticket(value)
    with open(value) as f:
        return parse_ticket(f.read())


def proof_mac(secret, kind, nonce, binding):
    msg = b"actor-tui proof 1\0" + kind.encode() + b"\0" + nonce + binding
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def _keepalive(sock, timeout_s=5):
    """A root whose network vanished is noticed within about `timeout_s`."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", max(1, timeout_s // 3)), ("TCP_KEEPINTVL", 1),
                        ("TCP_KEEPCNT", max(1, timeout_s - timeout_s // 3)),
                        ("TCP_USER_TIMEOUT", timeout_s * 1000)):
        opt = getattr(socket, name, None)
        if opt is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)
            except OSError:
                pass


def _expect(tls, kind):
    msg = _wire.read_frame(tls)
    if msg is None:
        raise ConnectionError("the root closed the link during the proof")
    if msg["type"] == "error":
        raise ConnectionError("the root refused us: %s" % msg.get("message"))
    if msg["type"] != kind:
        raise ConnectionError("expected %s, got %s" % (kind, msg["type"]))
    return msg


def connect(ticket, timeout=HANDSHAKE_TIMEOUT):
    """The TLS link to the ticket's root, proof passed; returns the local end of the bridge,
    ready for `hello`."""
    raw = socket.create_connection((ticket.host, ticket.port), timeout)
    try:
        _keepalive(raw)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        # The pin below is the check: the certificate is self-signed, made for this run.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = ctx.wrap_socket(raw, server_hostname=SERVER_NAME)
    except BaseException:
        raw.close()
        raise
    try:
        der = tls.getpeercert(binary_form=True)
        cert_hash = hashlib.sha256(der).digest()
        if not hmac.compare_digest(cert_hash, ticket.fingerprint):
            raise ConnectionError("the root's certificate is not the one in the ticket")
        nonce = bytes.fromhex(_expect(tls, "challenge")["nonce"])
        tls.sendall(_wire.frame({
            "type": "proof",
            "kind": ticket.kind,
            "binding": "server_cert",
            "mac": proof_mac(ticket.secret, ticket.kind, nonce, cert_hash),
        }))
        _expect(tls, "welcome")
        tls.settimeout(None)
        ours, theirs = socket.socketpair()
    except BaseException:
        tls.close()
        raise
    t = threading.Thread(target=_pump, args=(theirs, tls), name="actor-tui-link", daemon=True)
    t.start()
    return ours


def _pump(local, tls):
    """Carries bytes both ways until either side ends; then closes both."""
    local.setblocking(False)
    tls.setblocking(False)
    to_tls = bytearray()
    to_local = bytearray()
    try:
        while True:
            readers = []
            if len(to_tls) < _PUMP_LIMIT:
                readers.append(local)
            if len(to_local) < _PUMP_LIMIT:
                readers.append(tls)
            writers = ([tls] if to_tls else []) + ([local] if to_local else [])
            # Bytes OpenSSL already decrypted do not make the socket readable.
            if not (tls in readers and tls.pending()):
                select.select(readers, writers, [])
            if tls in readers:
                try:
                    while len(to_local) < _PUMP_LIMIT:
                        chunk = tls.recv(1 << 16)
                        if not chunk:
                            return
                        to_local += chunk
                        if not tls.pending():
                            break
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    pass
            if local in readers:
                try:
                    chunk = local.recv(1 << 16)
                    if not chunk:
                        return
                    to_tls += chunk
                except BlockingIOError:
                    pass
            if to_tls:
                try:
                    n = tls.send(to_tls)
                    del to_tls[:n]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    pass
            if to_local:
                try:
                    n = local.send(to_local)
                    del to_local[:n]
                except BlockingIOError:
                    pass
    except OSError:
        return
    finally:
        for s in (local, tls):
            try:
                s.close()
            except OSError:
                pass
