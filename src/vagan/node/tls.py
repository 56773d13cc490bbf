"""DICOM over TLS for ``vagan serve`` (PS3.15 Annex B, the BCP 195 profile): the SSL contexts built from
the config's ``tls`` section, checked before the port is bound. Only ``tls.ca`` is trusted, never the
system's certificate authorities.

pynetdicom wraps an accepted socket in the server's accept loop, with no timeout: one peer that opens
a connection and says nothing would stop the node from accepting anyone else. The server context here
defers the handshake to the connection's first read, in the thread that serves it, within a timeout.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from vagan.errors import ConfigError
from vagan.node.config import TLSConfig


class DeferredHandshakeContext(ssl.SSLContext):
    """A server context whose sockets do their TLS handshake at their first read (in the connection's own
    thread), each within ``handshake_timeout`` seconds: pynetdicom calls ``wrap_socket`` in its accept loop."""

    handshake_timeout: float = 60.0

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, *args, **kwargs):
        sock.settimeout(self.handshake_timeout)
        return super().wrap_socket(sock, server_side, False, *args, **kwargs)


def _context(tls: TLSConfig, ctx: ssl.SSLContext) -> ssl.SSLContext:
    """``ctx`` with TLS 1.2 or later, trusting ``tls.ca`` only (never the system's CAs), presenting the
    node's certificate."""
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


def server_context(tls: TLSConfig, handshake_timeout: float) -> ssl.SSLContext | None:
    """The listening side's context (``tls.listen``), or ``None``: the node's certificate, the peer's
    certificate required and checked against ``tls.ca`` unless ``require_peer_certificate`` is off, and
    each handshake deferred to its connection's thread within ``handshake_timeout``."""
    if not tls.listen:
        return None
    ctx = _context(tls, DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.handshake_timeout = handshake_timeout
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_peer_certificate else ssl.CERT_NONE
    return ctx


def client_context(tls: TLSConfig) -> ssl.SSLContext | None:
    """The sending side's context (a destination with ``tls: true``), or ``None`` when no certificate is
    configured: the destination's certificate must chain to ``tls.ca`` (and name its host unless
    ``check_hostname`` is off); the node presents its own certificate."""
    if not tls.certificate:
        return None
    ctx = _context(tls, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # verify_mode CERT_REQUIRED
    ctx.check_hostname = tls.check_hostname
    return ctx


def resolve_paths(tls: TLSConfig, base: Path) -> dict[str, str]:
    """``tls``'s file names, relative ones taken relative to ``base`` (the config file's folder)."""
    return {key: str(base / Path(value).expanduser())  # an absolute path stays itself
            for key in ("certificate", "private_key", "ca") if (value := getattr(tls, key))}
