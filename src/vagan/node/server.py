"""``vagan serve``: a DICOM node that receives CT series, denoises them and sends the derived series on.

Threads: pynetdicom's server (one thread per association) writes each received instance into the
spool and answers its C-STORE only then; a watcher marks a series complete once no association that
delivered to it is open and no instance came for ``stable_seconds``; one worker denoises one series
at a time; one sender delivers derived series with retries and backoff. All state lives in the
spool (:mod:`vagan.node.queue`), so a restart after a crash or ``kill -9`` resumes every job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from vagan.errors import MACHINE_FAULTS, InputDataError
from vagan.node.config import Destination, NodeConfig
from vagan.node.queue import COMPLETE, DENOISED, DUPLICATE, FAILED, RECEIVING, SENDING, SENT, Job, Queue, to_json
from vagan.node.sender import SendError, send_series
from vagan.node.spool import Spool, SpoolFull, fsync_dir, valid_uid, write_durably

log = logging.getLogger("vagan.node")

TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                     ExplicitVRBigEndian, JPEGLosslessSV1, UID("1.2.840.10008.1.2.4.57"), JPEGLSLossless,
                     JPEG2000Lossless, RLELossless]
"""Accepted for CT Image Storage: uncompressed and the lossless compressions vagan decodes (GDCM, CharLS).
Any other (lossy) syntax is refused at association negotiation, before a byte of pixel data arrives."""

STATUS_DECODE, STATUS_MISMATCH, STATUS_RESOURCES, STATUS_FAILED = 0xC210, 0xA900, 0xA700, 0xC211
"""C-STORE failure statuses: cannot understand (undecodable data set), data set does not match the SOP
class (missing or inconsistent UIDs, not a CT image), out of resources (spool full or write error), and a
failure of the node itself."""

Denoiser = Callable  # vagan.inference.denoise.Denoiser: hu -> Denoised


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = " ".join(comment.split())[:64]
    return ds


def _text(value: object) -> str:
    return (value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")).strip()


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class Node:
    """One node on one spool. :meth:`prepare` (lock, queue, model), then :meth:`start` binds the port."""

    def __init__(self, config: NodeConfig, denoiser: Denoiser | None = None, notice: str = "") -> None:
        self.config = config
        self.spool = Spool(config.spool, config.limits)
        self.queue: Queue | None = None
        self.denoiser = denoiser
        self.notice = notice
        self.server = None
        self._stop = threading.Event()
        self._work = threading.Event()
        self._send = threading.Event()
        self._receive_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._assoc_jobs: dict[object, set[int]] = {}  # open associations -> the jobs they delivered to
        self._ended: dict[object, set[int]] = {}  # released or aborted, until their connection closes
        self._threads: list[threading.Thread] = []
        self._server_tls = self._client_tls = None
        self.started = time.time()

    # -- life cycle --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything that may fail before the port is bound: the model's name, the spool's lock, the queue,
        the model itself."""
        from vagan.node.tls import client_context, server_context

        if self.denoiser is None:
            from vagan.node.config import check_model_spec

            check_model_spec(self.config.model)  # a wrong name is an error before the spool is created
        self._server_tls = server_context(self.config.tls, self.config.timeouts.network)  # before the spool
        self._client_tls = client_context(self.config.tls)
        self.spool.acquire()
        try:
            self.queue = Queue(self.spool.root / "queue.sqlite")
            self._recover()
            if self.denoiser is None:
                self.denoiser, self.notice = load_denoiser(self.config)
        except BaseException:
            self.close()
            raise

    def _recover(self) -> None:
        """After a crash: temporaries of killed writes removed, instance counts taken from the files (the
        truth: a file is there only once it was written in full), and a line per unfinished job."""
        assert self.queue is not None
        for tmp in (self.spool.root / "jobs").glob("*/received/.*.tmp-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        if not self.config.limits.keep_sent:  # a node killed between 'sent' and the removal of its files
            for job in self.queue.jobs((SENT,)):
                if self.spool.job_dir(job.id).exists():
                    self.spool.remove_job(job.id)
        for job in self.queue.jobs((RECEIVING, COMPLETE, DENOISED, SENDING)):
            if job.state in (RECEIVING, COMPLETE):
                files = self.spool.received_files(job.id)
                self.queue.add_sops(job.id, [p.stem for p in files])  # written, but killed before recorded
                self.queue.set_state(job.id, job.state, instances=len(files))
            if job.state == RECEIVING:  # its sender's association died with the old node: it may send again now
                self.queue.touch(job.id)
            log.info("job %d: resuming in state %s (series %s, %d instance(s))", job.id, job.state, job.series_uid,
                     len(self.spool.received_files(job.id)))

    def start(self) -> int:
        """Bind the port and start the threads; the port actually bound."""
        if self.queue is None:
            self.prepare()
        cfg = self.config
        ae = AE(ae_title=cfg.ae_title)
        ae.add_supported_context(CTImageStorage, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_associations = cfg.max_associations
        ae.acse_timeout = cfg.timeouts.acse
        ae.dimse_timeout = cfg.timeouts.dimse
        ae.network_timeout = cfg.timeouts.network
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_C_ECHO, self._on_echo), (evt.EVT_ESTABLISHED, self._on_established),
                    (evt.EVT_RELEASED, self._on_closed), (evt.EVT_ABORTED, self._on_closed),
                    (evt.EVT_CONN_CLOSE, self._on_conn_close)]
        self.server = ae.start_server((cfg.host, cfg.port), block=False, evt_handlers=handlers,
                                      ssl_context=self._server_tls)
        try:
            for name, target in (("watcher", self._watch), ("denoiser", self._denoise_loop),
                                 ("sender", self._send_loop)):
                thread = threading.Thread(target=target, name=f"vagan-node-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop()
            raise
        self._write_status()
        port = self.server.server_address[1]
        log.info("vagan serve: %s listening on %s:%d%s (model %s; spool %s; peers %s; destinations %s)",
                 cfg.ae_title, cfg.host, port, " (DICOM TLS)" if self._server_tls is not None else "", getattr(self.denoiser, "name", "?"), self.spool.root,
                 ", ".join(p.ae_title for p in cfg.allowed_peers),
                 ", ".join(d.label for d in cfg.destinations) + (" + sender" if cfg.return_to_sender else ""))
        return port

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server is not None else self.config.port

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking associations, let the worker and sender reach a safe point, release the spool."""
        self._stop.set()
        self._work.set()
        self._send.set()
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        busy = [t.name for t in self._threads if t.is_alive()]
        self._threads.clear()
        if busy:  # e.g. a long denoise: the process exits under it; the job resumes at the next start
            log.info("vagan serve: stopped while %s was busy; its job resumes at the next start", ", ".join(busy))
            return
        self._write_status()
        self.close()

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()
            self.queue = None
        self.spool.release()

    def wait(self) -> None:
        """Block until :meth:`stop` (or a signal in the main thread)."""
        while not self._stop.wait(1.0):
            pass

    # -- association handlers ----------------------------------------------------------------------
    def _on_requested(self, event) -> None:
        assoc = event.assoc
        calling = _text(assoc.requestor.primitive.calling_ae_title)  # set on the requestor only after negotiation
        address = str(assoc.requestor.address)
        if self._stop.is_set():
            assoc.acse.send_reject(0x02, 0x03, 0x01)  # transient: temporary congestion
            return
        if self.config.peer(calling, address) is None:
            log.warning("refused association from %s at %s: not an allowed peer (allowed_peers)", calling, address)
            assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent: calling AE title not recognised
            return
        why = self.spool.room_for_association()
        if why is not None:
            log.warning("refused association from %s at %s: %s (limits; nothing is deleted to make room)", calling,
                        address, why)
            assoc.acse.send_reject(0x02, 0x03, 0x02)  # transient: local limit exceeded

    def _on_echo(self, event) -> int:
        return 0x0000

    def _on_established(self, event) -> None:
        assoc = event.assoc
        with self._receive_lock:
            self._assoc_jobs.setdefault(assoc, set())
        refused = [cx for cx in getattr(assoc, "rejected_contexts", []) if cx.abstract_syntax != Verification]
        if refused:  # one line: what this node will not take (another SOP class, a lossy transfer syntax)
            why = {0x03: "SOP class not taken", 0x04: "transfer syntax not taken"}
            named = [f"{UID(cx.abstract_syntax).name or cx.abstract_syntax} ({why.get(cx.result, 'refused')})"
                     for cx in refused]
            log.warning("association from %s@%s: refused %d presentation context(s): %s%s", _text(assoc.requestor.ae_title),
                        assoc.requestor.address, len(refused), ", ".join(named[:4]),
                        f" and {len(named) - 4} more" if len(named) > 4 else "")

    def _on_closed(self, event) -> None:
        """Released or aborted: the association no longer holds its series open (see _watch)."""
        with self._receive_lock:
            jobs = self._assoc_jobs.pop(event.assoc, None)
            if jobs is not None:
                self._ended[event.assoc] = jobs

    def _on_conn_close(self, event) -> None:
        """One line for a connection that ended badly: an association aborted (by the peer, a timeout or a
        protocol error) or bytes that never became an association (pynetdicom's own lines are silenced)."""
        assoc = event.assoc
        with self._receive_lock:
            known = self._assoc_jobs.pop(assoc, None)
            ended = self._ended.pop(assoc, None)
        known = known if known is not None else ended
        address = str(getattr(assoc.requestor, "address", "") or "?")
        if assoc.is_rejected:
            return  # said by _on_requested
        if assoc.is_released:
            return
        if known is not None:  # pynetdicom closes the connection before it flags the abort
            log.warning("association from %s@%s aborted (by the peer, a timeout or a protocol error)%s",
                        _text(assoc.requestor.ae_title), address,
                        f"; job(s) {', '.join(map(str, sorted(known)))} keep what was stored" if known else "")
        else:
            tls = ", a TLS handshake that failed (no certificate, or one tls.ca does not sign)" \
                if self._server_tls is not None else ""
            log.warning("connection from %s closed without a DICOM association (not DICOM, a protocol error%s or a "
                        "port check; check a node with C-ECHO)", address, tls)

    def _on_store(self, event) -> Dataset | int:
        assoc = event.assoc
        peer = f"{_text(assoc.requestor.ae_title)}@{assoc.requestor.address}"
        try:
            return self._store(event, peer)
        except MACHINE_FAULTS as err:
            log.error("instance from %s refused: %s", peer, _one_line(err))
            return _status(STATUS_RESOURCES, f"vagan: {_one_line(err)}")
        except Exception as err:  # a bug must not stop the node: answer a failure, log one line
            log.error("instance from %s refused: internal error %s", peer, _one_line(err))
            log.debug("traceback", exc_info=True)
            return _status(STATUS_FAILED, "vagan: internal error")

    def _refuse(self, code: int, peer: str, what: str, why: str) -> Dataset:
        log.warning("refused instance %s from %s: 0x%04X %s", what, peer, code, why)
        return _status(code, why)

    def _store(self, event, peer: str) -> Dataset | int:
        request = event.request
        what = str(getattr(request, "AffectedSOPInstanceUID", "") or "?")
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            for part in (ds.file_meta, ds):  # pydicom decodes lazily: damage surfaces here, not later
                part.walk(lambda _ds, _elem: None)
        except MACHINE_FAULTS:
            raise
        except Exception as err:
            return self._refuse(STATUS_DECODE, peer, what, f"undecodable data set ({_one_line(err)[:40]})")
        sop_class = str(ds.get("SOPClassUID") or "")
        if not sop_class:
            return self._refuse(STATUS_MISMATCH, peer, what, "missing SOP Class UID")
        if sop_class != str(request.AffectedSOPClassUID):
            return self._refuse(STATUS_MISMATCH, peer, what, "SOP Class UID differs from the request's")
        sop_uid = str(ds.get("SOPInstanceUID") or "")
        if not valid_uid(sop_uid) or sop_uid != what:
            return self._refuse(STATUS_MISMATCH, peer, what, "SOP Instance UID missing, invalid or not the request's")
        study, series = str(ds.get("StudyInstanceUID") or ""), str(ds.get("SeriesInstanceUID") or "")
        if not (valid_uid(study) and valid_uid(series)):
            return self._refuse(STATUS_MISMATCH, peer, what, "Study or Series Instance UID missing or invalid")
        try:
            from vagan.io.dicom_header import check_ct_image

            check_ct_image(Path(sop_uid), ds)
            _check_pixel_length(ds)
        except InputDataError as err:
            return self._refuse(STATUS_MISMATCH, peer, what, str(err).removeprefix(f"{sop_uid}: "))
        if str(ds.get("DerivationDescription") or "").startswith("Denoised by vagan"):
            return self._refuse(STATUS_MISMATCH, peer, what, "already denoised by vagan: not taken again (a loop?)")
        data = event.encoded_dataset(include_meta=True)
        calling, address = _text(event.assoc.requestor.ae_title), str(event.assoc.requestor.address)
        assert self.queue is not None
        with self._receive_lock:  # the job and the association's claim on it, together (see _watch)
            job, created = self.queue.receiving_job(study, series, calling, address)
            self._assoc_jobs.setdefault(event.assoc, set()).add(job.id)
        if created:
            log.info("job %d: receiving series %s of study %s from %s", job.id, series, study, peer)
            earlier = [j.id for j in self.queue.series_jobs(series) if j.id != job.id]
            if earlier:
                log.warning("job %d: series %s arrives again after job %s took it as complete: a new job; sent "
                            "again in full, it makes no second output; with new instances, the whole series is "
                            "derived again (raise stable_seconds if the sender pauses between associations)", job.id,
                            series, ", ".join(map(str, earlier)))
        try:
            _, existed = self.spool.store(job.id, sop_uid, data)
        except SpoolFull as err:
            return self._refuse(STATUS_RESOURCES, peer, what, f"spool full: {err}")
        except OSError as err:
            return self._refuse(STATUS_RESOURCES, peer, what, f"spool write failed: {err.strerror or err}")
        self.queue.received(job.id, not existed, sop_uid)
        return 0x0000

    # -- the watcher: when is a series complete ----------------------------------------------------
    def _watch(self) -> None:
        tick = min(1.0, max(0.05, self.config.stable_seconds / 5))
        last_status = 0.0
        while not self._stop.wait(tick):
            try:
                self._complete_stable()
                if time.time() - last_status > 10:
                    self._write_status()
                    last_status = time.time()
            except Exception as err:  # keep watching; say what went wrong once per tick
                log.error("watcher: %s", _one_line(err))

    def _complete_stable(self) -> None:
        assert self.queue is not None
        now = time.time()
        for job in self.queue.jobs((RECEIVING,)):
            with self._receive_lock:
                busy = any(job.id in jobs for jobs in self._assoc_jobs.values())
                if busy or now - job.last_received < self.config.stable_seconds:
                    continue
                n = len(self.spool.received_files(job.id))
                if n == 0:  # every instance was refused (or the node died before the first was written)
                    if self.queue.drop_empty(job.id):
                        self.spool.remove_job(job.id)
                        log.info("job %d: no instance of series %s was stored; dropped", job.id, job.series_uid)
                    continue
                original = self._duplicate_of(job)
                if original is not None:
                    self.queue.set_state(job.id, DUPLICATE, expect=(RECEIVING,), instances=n,
                                         error=f"sent again: every instance is in job {original.id}")
                    if not self.config.limits.keep_sent:
                        self.spool.remove_job(job.id)
                    log.warning("job %d: series %s sent again with no new instance (%d): job %d%s stands; no second "
                                "derived series", job.id, job.series_uid, n, original.id,
                                f"'s derived series {original.derived_series_uid}" if original.derived_series_uid
                                else "")
                    self._write_status()
                    continue
                moved = self.queue.set_state(job.id, COMPLETE, expect=(RECEIVING,), instances=n)
            if moved:
                log.info("job %d: series %s complete: %d instance(s), none for %.3g s and no open association",
                         job.id, job.series_uid, n, self.config.stable_seconds)
                self._write_status()
                self._work.set()

    def _duplicate_of(self, job: Job) -> Job | None:
        """The earlier job of the same series that already holds every instance of ``job`` (a sender that
        retried a transfer the node had taken in full), or ``None``. A job that failed before it had a
        derived series does not count: sending its series again processes it again."""
        assert self.queue is not None
        mine = self.queue.sop_uids(job.id)
        for other in self.queue.series_jobs(job.series_uid):
            if other.id >= job.id or other.state in (RECEIVING, DUPLICATE):
                continue
            if other.state == FAILED and other.derived_series_uid is None:
                continue
            if mine <= self.queue.sop_uids(other.id):
                return other
        return None

    # -- the worker: denoise one series at a time --------------------------------------------------
    def _denoise_loop(self) -> None:
        assert self.queue is not None
        while not self._stop.is_set():
            jobs = self.queue.jobs((COMPLETE, DENOISED))
            if not jobs:
                self._work.wait(1.0)
                self._work.clear()
                continue
            job = jobs[0]
            try:
                self.process(job)
            except Exception as err:
                if self._stop.is_set():
                    return  # stopping: the job stays where it was and resumes at the next start
                log.error("job %d: failed: %s", job.id, _one_line(err))
                self.queue.set_state(job.id, FAILED, error=_one_line(err)[:500])
            self._write_status()

    def process(self, job: Job) -> None:
        """Take ``job`` from ``complete`` to ``sending``: denoise (or adopt a derived series a killed node
        already published), record the derived series' UID, then queue its deliveries."""
        assert self.queue is not None
        if job.state == COMPLETE:
            derived = self.spool.derived_dir(job.id)
            if derived.is_dir():
                log.info("job %d: derived series already in the spool (written before a restart): not denoised again",
                         job.id)
            else:
                self._denoise(job, derived)
            files = self.spool.derived_files(job.id)
            uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
            self.queue.set_state(job.id, DENOISED, expect=(COMPLETE,), derived_series_uid=uid,
                                 derived_instances=len(files))
            job = self.queue.job(job.id)
        if job.state == DENOISED:
            targets = self.config.targets(job.calling_ae, job.peer_host)
            if not targets:  # return_to_sender only, and the sender is no longer an allowed peer with a port
                raise RuntimeError(f"no destination for a series from {job.calling_ae}@{job.peer_host}: the config "
                                   "has no destinations and this sender is not an allowed peer with a port")
            self.queue.add_deliveries(job.id, [(d.label, d.ae_title, d.host, d.port) for d in targets])
            log.info("job %d: derived series %s (%s instance(s)) queued for %s", job.id, job.derived_series_uid,
                     job.derived_instances, ", ".join(d.label for d in targets))
            self._send.set()

    def _denoise(self, job: Job, derived: Path) -> None:
        from vagan.io.dicom import read_dicom_series, write_dicom_series

        started = time.time()
        self._merge_earlier(job)
        try:
            volume = read_dicom_series(self.spool.received_dir(job.id))
            result = self.denoiser(volume.hu)
        except InputDataError as err:
            raise InputDataError(str(err).replace(str(self.spool.received_dir(job.id)), f"series {job.series_uid}")
                                 ) from None
        name = getattr(self.denoiser, "name", "model")
        label = getattr(getattr(self.denoiser, "model", None), "label", None) or name  # as `vagan denoise` names it
        write_dicom_series(result.hu, derived, template=volume, series_description=f"vagan {name} denoised",
                           model_name=label, derivation_description=f"Denoised by vagan ({name}) from series {job.series_uid}"
                           + (f"; {self.notice}" if self.notice else ""))
        log.info("job %d: denoised %d slice(s) of %dx%d with %s in %.1f s", job.id, *result.hu.shape, name,
                 time.time() - started)

    def _merge_earlier(self, job: Job) -> None:
        """A series that grew after an earlier job took it as complete: the instances of the earlier jobs still
        in the spool join this job (hard links), so that its derived series is the whole series."""
        assert self.queue is not None
        folder = self.spool.received_dir(job.id)
        added: list[str] = []
        for other in self.queue.series_jobs(job.series_uid):
            if other.id >= job.id:
                continue
            for path in self.spool.received_files(other.id):
                target = folder / path.name
                if target.exists():
                    continue
                try:
                    os.link(path, target)
                except OSError:
                    write_durably(target, path.read_bytes())
                added.append(path.stem)
        if added:
            fsync_dir(folder)
            self.queue.add_sops(job.id, added)
            self.queue.set_state(job.id, job.state, instances=len(self.spool.received_files(job.id)))
            log.info("job %d: %d earlier instance(s) of series %s joined from the spool", job.id, len(added),
                     job.series_uid)

    # -- the sender: deliveries with retries and backoff -------------------------------------------
    def _send_loop(self) -> None:
        assert self.queue is not None
        while not self._stop.is_set():
            due = self.queue.due_deliveries(time.time())
            if not due:
                nxt = self.queue.next_due()
                wait = 1.0 if nxt is None else min(1.0, max(0.01, nxt - time.time()))
                self._send.wait(wait)
                self._send.clear()
                continue
            for delivery in due:
                if self._stop.is_set():
                    return
                try:
                    self._deliver(delivery)
                except Exception as err:
                    log.error("job %d: delivery to %s: %s", delivery.job_id, delivery.destination, _one_line(err))
                    self.queue.delivery_failed(delivery.job_id, delivery.destination, _one_line(err), None)
                    self._settle(delivery.job_id)
                self._write_status()

    def _deliver(self, delivery) -> None:
        assert self.queue is not None
        job = self.queue.job(delivery.job_id)
        files = self.spool.derived_files(job.id)
        tls = self.config.reached_by_tls(delivery.destination)
        if tls is None:  # fail closed: never guess how a destination that left the config is reached
            raise RuntimeError(f"destination {delivery.destination!r} is no longer in the config; not sent (the "
                               "series stays in the spool: put the destination back, then --retry-failed)")
        if tls and self._client_tls is None:
            raise RuntimeError(f"destination {delivery.destination!r} is reached by TLS and tls has no certificate")
        dest = Destination(name=delivery.destination, ae_title=delivery.ae_title, host=delivery.host,
                           port=delivery.port, tls=tls)
        if len(files) != job.derived_instances:
            raise RuntimeError(f"the spool holds {len(files)} of the {job.derived_instances} derived instance(s)")
        try:
            sent = send_series(files, dest, self.config.ae_title, self.config.timeouts, stop=self._stop,
                               tls=self._client_tls if dest.tls else None)
        except SendError as err:
            if self._stop.is_set():
                log.info("job %d: delivery to %s interrupted by shutdown; it resumes at the next start", job.id,
                         dest.label)
                return
            attempts = delivery.attempts + 1
            policy = self.config.retries
            if attempts >= policy.attempts:
                self.queue.delivery_failed(job.id, dest.label, str(err), None)
                log.error("job %d: delivery to %s FAILED after %d attempt(s): %s; the series stays in the spool "
                          "(jobs/%06d)", job.id, dest.label, attempts, err, job.id)
            else:
                delay = policy.delay(attempts)
                self.queue.delivery_failed(job.id, dest.label, str(err), time.time() + delay)
                log.warning("job %d: delivery to %s failed (attempt %d of %d): %s; next try in %.0f s", job.id,
                            dest.label, attempts, policy.attempts, err, delay)
            self._settle(job.id)
            return
        self.queue.delivered(job.id, dest.label)
        log.info("job %d: sent %d instance(s) of derived series %s to %s", job.id, sent, job.derived_series_uid,
                 dest.label)
        self._settle(job.id)

    def _settle(self, job_id: int) -> None:
        """A job whose deliveries are all final is sent (every destination has it) or failed."""
        assert self.queue is not None
        deliveries = self.queue.deliveries(job_id)
        if any(d.state == "pending" for d in deliveries):
            return
        failed = [d for d in deliveries if d.state == "failed"]
        if failed:
            error = "; ".join(f"{d.destination}: {d.last_error}" for d in failed)
            self.queue.set_state(job_id, FAILED, expect=(SENDING,), error=error[:500])
            log.error("job %d: failed: %s", job_id, error)
            return
        if self.queue.set_state(job_id, SENT, expect=(SENDING,)):
            log.info("job %d: done: every destination holds the derived series", job_id)
            if not self.config.limits.keep_sent:
                self.spool.remove_job(job_id)

    # -- status ------------------------------------------------------------------------------------
    def status(self) -> dict:
        assert self.queue is not None
        snapshot = self.queue.snapshot()
        snapshot["node"] = {"ae_title": self.config.ae_title, "host": self.config.host, "port": self.port,
                            "pid": os.getpid(), "started": self.started, "updated": time.time(),
                            "spool_bytes": self.spool.used_bytes,
                            "open_associations": len(self._assoc_jobs)}
        return snapshot

    def _write_status(self) -> None:
        if self.queue is None:
            return
        with self._status_lock:
            try:
                write_durably(self.spool.root / "status.json", to_json(self.status()).encode())
            except (OSError, ValueError) as err:  # the status file is a convenience: never stop the node for it
                log.warning("could not write %s: %s", self.spool.root / "status.json", _one_line(err))


def _check_pixel_length(ds: Dataset) -> None:
    """Uncompressed pixel data must hold Rows x Columns values (a truncated slice is refused at once)."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or UID(str(syntax)).is_compressed:
        return
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("BitsAllocated") or 16) // 8
    if len(ds.PixelData) < expected:
        raise InputDataError(f"pixel data of {len(ds.PixelData)} bytes, expected {expected} (truncated)")


def load_denoiser(config: NodeConfig):
    """The node's network denoiser and its notice (a shipped model's 'not for diagnostic use'), loaded once."""
    from vagan.devices import resolve_device
    from vagan.inference.engine import network_denoiser
    from vagan.inference.model_loading import load_trained_model
    from vagan.node.config import check_model_spec
    from vagan.precision import resolve_precision

    folder = check_model_spec(config.model)
    device = resolve_device(config.device)
    model = load_trained_model(folder, device)
    denoiser = network_denoiser(model, engine=config.engine, precision=resolve_precision(config.precision, device),
                                batch_size=config.batch_size, name=getattr(model, "label", None) or None)
    return denoiser, getattr(model, "notice", "")

