"""DICOM over TLS for ``vagan serve`` (PS3.15 Annex B, the BCP 195 profile): the SSL contexts built from
the config's ``tls`` section, checked before the port is bound, and a listening socket whose TLS
handshake runs in each connection's own thread, bounded by the network timeout.

pynetdicom wraps an accepted socket in the server's accept loop, with no timeout: one peer that opens
a connection and says nothing would stop the node from accepting anyone else. Here the handshake is
deferred to the first read, in the thread that serves that connection.
"""

from __future__ import annotations

import ssl
import types
from pathlib import Path

from vagan.errors import ConfigError
from vagan.node.config import TLSConfig


def _context(tls: TLSConfig, purpose: ssl.Purpose) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195
    try:
        ctx.load_verify_locations(cafile=tls.ca)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"tls.ca: cannot load the CA certificates from {tls.ca}: {err}") from None
    try:
        ctx.load_cert_chain(tls.certificate, tls.private_key)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"tls.certificate/private_key: cannot load {tls.certificate} with {tls.private_key} "
                          f"(missing, not PEM, encrypted, or a key that does not match the certificate): {err}"
                          ) from None
    return ctx


def server_context(tls: TLSConfig) -> ssl.SSLContext | None:
    """The listening side's context (``tls.listen``), or ``None``: the node's certificate, and the peer's
    certificate required and checked against ``tls.ca`` unless ``require_peer_certificate`` is off."""
    if not tls.listen:
        return None
    ctx = _context(tls, ssl.Purpose.CLIENT_AUTH)
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_peer_certificate else ssl.CERT_NONE
    return ctx


def client_context(tls: TLSConfig) -> ssl.SSLContext | None:
    """The sending side's context (a destination with ``tls: true``), or ``None`` when no certificate is
    configured: the destination's certificate is checked against ``tls.ca`` (and its host name unless
    ``check_hostname`` is off); the node presents its own certificate."""
    if not tls.certificate:
        return None
    ctx = _context(tls, ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = tls.check_hostname
    return ctx


def use_deferred_handshake(server, ctx: ssl.SSLContext, timeout: float) -> None:
    """Make pynetdicom's ``server`` wrap each accepted socket in ``ctx`` without a handshake in the accept
    loop: the handshake runs at the connection's first read, in its own thread, within ``timeout``."""

    def get_request(self):
        sock, address = self.socket.accept()
        sock.settimeout(timeout)
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    server.get_request = types.MethodType(get_request, server)


def resolve_paths(tls: TLSConfig, base: Path) -> dict[str, str]:
    """``tls``'s relative file names, taken relative to ``base`` (the config file's folder)."""
    out = {}
    for key in ("certificate", "private_key", "ca"):
        value = getattr(tls, key)
        if value and not Path(value).expanduser().is_absolute():
            out[key] = str(base / Path(value).expanduser())
        elif value:
            out[key] = str(Path(value).expanduser())
    return out
