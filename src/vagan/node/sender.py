"""C-STORE of a derived series to one destination: one association, every instance, then release.

:func:`send_series` succeeds only when every instance was answered with a success or warning status
and the association was released; anything else raises :class:`SendError` with one line saying why,
and the caller retries later (the same files, so the same SOP Instance UIDs: a receiver that already
holds some of them gets them again, never a second series).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from vagan.node.config import Destination, Timeouts

log = logging.getLogger(__name__)

OK_STATUSES = {0x0000, 0x0001, 0xB000, 0xB006, 0xB007}
"""Success, and the C-STORE warnings (coercion, elements discarded, data set does not match SOP class):
the receiver holds the instance."""


class SendError(Exception):
    """A delivery attempt that failed; the message is one line."""


def send_series(files: Sequence[Path], destination: Destination, calling_ae: str, timeouts: Timeouts,
                stop: threading.Event | None = None, tls: ssl.SSLContext | None = None) -> int:
    """C-STORE ``files`` (one series, Explicit VR Little Endian files) to ``destination``; the count sent.
    A set ``stop`` aborts the association between two instances (a :class:`SendError`); ``tls``: DICOM
    TLS with this context (:func:`vagan.node.tls.client_context`)."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.acse_timeout = timeouts.acse
    ae.dimse_timeout = timeouts.dimse
    ae.network_timeout = timeouts.network
    ae.connection_timeout = timeouts.connect
    where = f"{destination.ae_title}@{destination.host}:{destination.port}"
    try:
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                             tls_args=(tls, destination.host) if tls is not None else None)
    except (OSError, ValueError) as err:
        raise SendError(f"cannot connect to {where}: {err}") from None
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else (
            "did not answer (connection refused or timed out" + (", or the TLS handshake failed: check the "
                                                                 "certificates and tls.ca" if tls else "") + ")")
        raise SendError(f"{where} {why}")
    sent = 0
    try:
        for path in files:
            if stop is not None and stop.is_set():
                raise SendError(f"stopped after {sent} of {len(files)} instance(s) to {where}")
            ds = pydicom.dcmread(path)
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code not in OK_STATUSES:
                comment = str(status.get("ErrorComment", "")) if status else ""
                what = f"status 0x{code:04X}" if code >= 0 else "no answer (association lost or timed out)"
                raise SendError(f"{where} answered {what} for {path.name}" + (f" ({comment})" if comment else ""))
            sent += 1
        assoc.release()
        if not assoc.is_released:
            raise SendError(f"{where}: the association was not released cleanly after {sent} instance(s)")
    finally:
        if assoc.is_established:
            assoc.abort()
        ae.shutdown()
    return sent


def echo(destination: Destination, calling_ae: str, timeouts: Timeouts) -> bool:
    """C-ECHO ``destination``: whether it answered with success."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeouts.acse
    ae.connection_timeout = timeouts.connect
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    try:
        if not assoc.is_established:
            return False
        status = assoc.send_c_echo()
        return bool(status) and int(status.Status) == 0
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
