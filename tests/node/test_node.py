"""`vagan serve` without Orthanc: config checks, the spool's guarantees, the queue's resume, and
pynetdicom-to-pynetdicom round trips on 127.0.0.1 with a tiny trained model and 32x32 CT slices."""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from node_support import HOST, MRImageStorage, Receiver, free_port, make_series, node_config, send, wait_for
from pydicom.uid import JPEGBaseline8Bit
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification
from typer.testing import CliRunner

from vagan.cli import app
from vagan.node import spool as spool_module
from vagan.node.queue import COMPLETE, DUPLICATE, FAILED, SENDING, SENT, Queue
from vagan.node.server import Node

runner = CliRunner()


@pytest.fixture
def start_node(tmp_path, tiny_denoiser):
    """Start an in-process node (stopped at the end of the test)."""
    nodes: list[Node] = []

    def start(config) -> Node:
        node = Node(config, denoiser=tiny_denoiser)
        node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def _derived(receiver: Receiver, n: int, timeout: float = 30.0) -> dict[str, list[pydicom.Dataset]]:
    wait_for(lambda: sum(len(v) for v in receiver.series().values()) >= n, timeout, what=f"{n} derived instances")
    return receiver.series()


def _job_states(node: Node) -> list[str]:
    return [job.state for job in node.queue.jobs()]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# -- configuration -------------------------------------------------------------------------------------
def _write_config(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("change, message", [
    ({"ae_title": "A" * 17}, "ae_title: 'AAAAAAAAAAAAAAAAA' is not a DICOM AE title"),
    ({"port": 70000}, "port: must be >= 1 and <= 65535"),
    ({"allowed_peers": []}, "allowed_peers: empty"),
    ({"destinations": []}, "destinations: empty and return_to_sender is false"),
    ({"stable_seconds": 0}, "stable_seconds: must be > 0"),
    ({"model": "bm3d"}, "the node runs trained networks only"),
    ({"model": "no-such-model"}, "model: 'no-such-model' is neither a shipped model"),
    ({"retries": {"attempts": 0}}, "retries.attempts: must be >= 1"),
    ({"destinations": [{"name": "x", "ae_title": "PACS", "host": "127.0.0.1", "port": 104, "colour": 1}]},
     "unknown config key 'destinations[0].colour'"),
    ({"return_to_sender": True}, "return_to_sender needs the port each peer listens on"),
    ({"limits": {"max_spool_gb": -1}}, "limits.max_spool_gb: must be > 0"),
])
def test_bad_config_is_one_error_line_and_binds_nothing(tmp_path, tiny_run, change, message):
    port = free_port()
    values = {"port": port, "spool": str(tmp_path / "spool"), "model": str(tiny_run), "allowed_peers": ["MODALITY"],
              "destinations": [{"name": "pacs", "ae_title": "PACS", "host": HOST, "port": 11112}]}
    values.update(change)
    result = runner.invoke(app, ["serve", str(_write_config(tmp_path / "node.yaml", **values))])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert _port_free(port)
    assert not (tmp_path / "spool").exists()


def test_not_yaml_and_port_in_use_are_one_error_line(tmp_path, tiny_run):
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: [1, 2\n")
    result = runner.invoke(app, ["serve", str(bad)])
    assert result.exit_code == 2 and result.output.count("error:") == 1 and "not valid YAML" in result.output
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _write_config(tmp_path / "node.yaml", port=port, spool=str(tmp_path / "spool"), model=str(tiny_run),
                               engine="torch", allowed_peers=["MODALITY"],
                               destinations=[{"name": "pacs", "ae_title": "PACS", "host": HOST, "port": 11112}])
        result = runner.invoke(app, ["serve", str(config)])
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and f"cannot listen on {HOST}:{port}" in lines[0], result.output
    # the spool was released: a node can take it now
    node = Node(node_config(tmp_path, None, str(tiny_run), destinations=({"name": "x", "ae_title": "X", "host": HOST,
                                                                          "port": 1},)), denoiser=lambda hu: hu)
    node.prepare()
    node.close()


def test_one_node_per_spool(tmp_path, receiver, start_node, tiny_run):
    config = node_config(tmp_path, receiver, str(tiny_run))
    start_node(config)
    second = Node(config, denoiser=lambda hu: hu)
    with pytest.raises(Exception, match="in use by another vagan serve"):
        second.prepare()


# -- the spool -----------------------------------------------------------------------------------------
def test_full_disk_answers_out_of_resources_and_keeps_serving(tmp_path, receiver, start_node, tiny_run, monkeypatch,
                                                                caplog):
    node = start_node(node_config(tmp_path, receiver, str(tiny_run)))
    files = make_series(tmp_path / "in", 3)
    real = os.fsync
    calls = {"n": 0}

    def full_disk(fd):
        calls["n"] += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(spool_module.os, "fsync", full_disk)
    with caplog.at_level(logging.WARNING, logger="vagan.node"):
        codes = send(files[:1], node.port)
    assert codes == [0xA700] and calls["n"] >= 1
    assert "spool write failed: No space left on device" in caplog.text
    received = node.spool.root / "jobs"
    assert not [p for p in received.rglob("*") if p.is_file()]  # nothing half-written, no temporary left
    monkeypatch.setattr(spool_module.os, "fsync", real)
    assert send(files, node.port) == [0, 0, 0]
    series = _derived(receiver, 3)
    assert [len(v) for v in series.values()] == [3]


def test_spool_limits_refuse_associations_and_instances(tmp_path, receiver, start_node, tiny_run, caplog):
    files = make_series(tmp_path / "in", 2)
    size = files[0].stat().st_size
    limits = {"max_spool_gb": 3 * size / 1e9, "association_headroom_mb": 0, "min_free_gb": 0}
    node = start_node(node_config(tmp_path, receiver, str(tiny_run), limits=limits, stable_seconds=30))
    with caplog.at_level(logging.WARNING, logger="vagan.node"):
        assert send(files, node.port) == [0, 0xA700]  # the second would pass the limit (with its derived copy)
        assert len(node.spool.received_files(1)) == 1
        node.spool.limits = node.spool.limits.__class__(**{**limits, "association_headroom_mb": 1})
        assert send(files[1:], node.port) is None  # a new association is refused: nothing is deleted
    assert "refused association from MODALITY" in caplog.text and "nothing is deleted" in caplog.text
    assert len(node.spool.received_files(1)) == 1


# -- round trips ---------------------------------------------------------------------------------------
def test_round_trip_returns_a_derived_series_of_the_same_study(tmp_path, receiver, start_node, tiny_run, caplog):
    config = node_config(tmp_path, receiver, str(tiny_run))
    with caplog.at_level(logging.INFO, logger="vagan.node"):
        node = start_node(config)
        files = make_series(tmp_path / "in", 4)
        assert send(files, node.port) == [0] * 4
        series = _derived(receiver, 4)
        wait_for(lambda: _job_states(node) == [SENT], 10, what="job sent")
    source = [pydicom.dcmread(f) for f in files]
    (uid, derived), = series.items()
    assert uid != source[0].SeriesInstanceUID and len(derived) == 4
    assert {d.StudyInstanceUID for d in derived} == {source[0].StudyInstanceUID}
    assert all(d.ImageType[0] == "DERIVED" for d in derived)
    assert {d.SeriesDescription for d in derived} == {"test CT [vagan g_psnr]"}  # as `vagan denoise` names it
    refs = {d.SourceImageSequence[0].ReferencedSOPInstanceUID for d in derived}
    assert refs == {s.SOPInstanceUID for s in source}
    assert not np.array_equal(derived[0].pixel_array, source[0].pixel_array)
    assert "aborted" not in caplog.text and "without a DICOM association" not in caplog.text
    for step in ("receiving series", "complete: 4 instance(s)", "denoised 4 slice(s)", "sent 4 instance(s)",
                 "done: every destination"):
        assert step in caplog.text
    wait_for(lambda: not node.spool.job_dir(1).exists(), 5, what="the sent job's files removed (keep_sent false)")
    wait_for(lambda: '"state": "sent"' in (node.spool.root / "status.json").read_text(), 5, what="status.json")
    # `vagan serve --status` reads the queue from the spool
    config_file = _write_config(tmp_path / "node.yaml", port=config.port, spool=config.spool, model=config.model,
                                allowed_peers=["MODALITY"],
                                destinations=[{"name": "pacs", "ae_title": "PACS", "host": HOST,
                                               "port": receiver.port}])
    result = runner.invoke(app, ["serve", "--status", str(config_file)])
    assert result.exit_code == 0 and f"running (pid {os.getpid()})" in result.output
    assert f"1 | sent | {source[0].SeriesInstanceUID} | 4 | {uid} | pacs sent" in result.output


def test_disallowed_peers_are_refused(tmp_path, receiver, start_node, tiny_run, caplog):
    node = start_node(node_config(tmp_path, receiver, str(tiny_run),
                                  allowed_peers=("MODALITY", {"ae_title": "ELSEWHERE", "host": "10.1.2.3"})))
    files = make_series(tmp_path / "in", 1)
    with caplog.at_level(logging.WARNING, logger="vagan.node"):
        assert send(files, node.port, calling_ae="INTRUDER") is None
        assert send(files, node.port, calling_ae="ELSEWHERE") is None  # the right title from the wrong host
    assert caplog.text.count("not an allowed peer") == 2
    assert node.queue.jobs() == []


def test_non_ct_is_refused_and_never_processed(tmp_path, receiver, start_node, tiny_run, caplog):
    caplog.set_level(logging.WARNING, logger="vagan.node")
    node = start_node(node_config(tmp_path, receiver, str(tiny_run)))
    files = make_series(tmp_path / "in", 1)
    ds = pydicom.dcmread(files[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.Modality = "MR"
    try:  # MR is not negotiated at all: no association, or no context to send it on
        assert send([ds], node.port, contexts=(MRImageStorage,)) is None
    except ValueError as err:
        assert "presentation context" in str(err)
    wait_for(lambda: "refused 1 presentation context(s): MR Image Storage (SOP class not taken)" in caplog.text, 5,
             what="the refused context's line")
    ct_but_mr = pydicom.dcmread(files[0])
    ct_but_mr.Modality = "MR"
    assert send([ct_but_mr], node.port) == [0xA900]
    time.sleep(0.7)
    assert node.queue.jobs() == [] and receiver.series() == {}


def _raw_file(tmp_path: Path, template: Path, body: bytes) -> Path:
    """A Part 10 file with ``template``'s meta (CT, its UIDs, explicit LE) and ``body`` as the data set."""
    ds = pydicom.dcmread(template)
    path = tmp_path / "raw.dcm"
    meta_only = pydicom.Dataset()
    meta_only.file_meta = ds.file_meta
    meta_only.preamble = b"\0" * 128
    pydicom.dcmwrite(path, meta_only, enforce_file_format=True)
    with open(path, "ab") as fh:
        fh.write(body)
    return path


def test_bad_input_answers_a_failure_status_and_the_node_keeps_serving(tmp_path, receiver, start_node, tiny_run,
                                                                         monkeypatch, caplog):
    node = start_node(node_config(tmp_path, receiver, str(tiny_run)))
    files = make_series(tmp_path / "in", 2)
    good = pydicom.dcmread(files[0])
    no_class = pydicom.dcmread(files[0])
    del no_class.SOPClassUID
    buffer = pydicom.filebase.DicomBytesIO()
    pydicom.filewriter.write_dataset(buffer, no_class)
    garbage = b"\x08\x00\x16\x00ZZ\x04\x00abcd" + os.urandom(200)  # an unknown VR, then noise
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send the files' bytes as they are
    with caplog.at_level(logging.WARNING, logger="vagan.node"):
        assert send([_raw_file(tmp_path, files[0], buffer.getvalue())], node.port) == [0xA900]
        assert send([_raw_file(tmp_path, files[0], garbage)], node.port) == [0xC210]
        truncated = pydicom.dcmread(files[0])
        truncated.PixelData = truncated.PixelData[:100]
        monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", False)
        assert send([truncated], node.port) == [0xA900]
        # an unsupported (lossy) transfer syntax is refused at negotiation
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(CTImageStorage, [JPEGBaseline8Bit])
        ae.acse_timeout = ae.network_timeout = 5
        assoc = ae.associate(HOST, node.port, ae_title="VAGAN")
        assert not assoc.is_established or not assoc.accepted_contexts
        if assoc.is_established:
            assoc.release()
        # a peer sending garbage bytes on the socket
        with socket.create_connection((HOST, node.port), timeout=5) as raw:
            raw.sendall(os.urandom(3000))
            raw.settimeout(5)
            try:
                raw.recv(100)
            except OSError:
                pass
        wait_for(lambda: "closed without a DICOM association" in caplog.text, 10, what="the garbage's line")
    assert "missing SOP Class UID" in caplog.text and "undecodable data set" in caplog.text
    assert caplog.text.count("closed without a DICOM association") == 1  # the garbage: one line
    assert "truncated" in caplog.text
    # still serving: C-ECHO, then a good series goes through
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, node.port, ae_title="VAGAN")
    assert assoc.is_established and int(assoc.send_c_echo().Status) == 0
    assoc.release()
    assert send([good, pydicom.dcmread(files[1])], node.port) == [0, 0]
    assert [len(v) for v in _derived(receiver, 2).values()] == [2]


def test_an_incomplete_series_waits_for_its_association_and_the_stable_time(tmp_path, receiver, start_node, tiny_run):
    node = start_node(node_config(tmp_path, receiver, str(tiny_run), stable_seconds=0.4))
    files = make_series(tmp_path / "in", 5)
    sender = threading.Thread(target=send, args=(files, node.port), kwargs={"pause_after": 2, "pause": 1.5})
    sender.start()
    wait_for(lambda: len(node.spool.received_files(1)) == 2, 10, what="two instances")
    time.sleep(0.9)  # longer than stable_seconds, but the association is still open
    assert _job_states(node) == ["receiving"]
    sender.join(15)
    series = _derived(receiver, 5)
    assert [len(v) for v in series.values()] == [5] and len(node.queue.jobs()) == 1


def test_two_series_at_once(tmp_path, receiver, start_node, tiny_run):
    node = start_node(node_config(tmp_path, receiver, str(tiny_run)))
    study = pydicom.uid.generate_uid()
    a = make_series(tmp_path / "a", 4, study_uid=study, seed=1)
    b = make_series(tmp_path / "b", 3, study_uid=study, seed=2)
    results = {}
    threads = [threading.Thread(target=lambda k, f: results.__setitem__(k, send(f, node.port)), args=(k, f))
               for k, f in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == {"a": [0] * 4, "b": [0] * 3}
    series = _derived(receiver, 7)
    assert sorted(len(v) for v in series.values()) == [3, 4]
    wait_for(lambda: _job_states(node) == [SENT, SENT], 10, what="both jobs sent")


def test_a_small_load_from_four_associations_at_once_loses_nothing(tmp_path, receiver, start_node, tiny_run):
    """The load test of benchmarks/bench_node.py at suite size: 8 series of 6 slices from 4 associations
    at once (two series each, interleaved slice by slice): every instance acknowledged, every series
    returned whole, exactly once."""
    node = start_node(node_config(tmp_path, receiver, str(tiny_run), stable_seconds=0.5))
    series = [make_series(tmp_path / f"s{k}", 6, seed=k) for k in range(8)]
    results: dict[int, list | None] = {}

    def sender(k: int) -> None:  # slices of two series alternate in one association
        files = [f for pair in zip(series[2 * k], series[2 * k + 1]) for f in pair]
        results[k] = send(files, node.port, calling_ae="MODALITY")

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: [0] * 12 for k in range(4)}
    derived = _derived(receiver, 48, timeout=60)
    wait_for(lambda: _job_states(node) == [SENT] * 8, 30, what="all eight jobs sent")
    assert sorted(len(v) for v in derived.values()) == [6] * 8
    sources = {str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID) for v in derived.values() for ds in v}
    assert sources == {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for s in series for f in s}


# -- destinations down ---------------------------------------------------------------------------------
def test_destination_down_then_up_is_delivered_after_a_retry(tmp_path, receiver, start_node, tiny_run, caplog):
    receiver.stop()
    node = start_node(node_config(tmp_path, receiver, str(tiny_run),
                                  retries={"attempts": 20, "backoff_seconds": 0.3, "max_backoff_seconds": 0.6}))
    files = make_series(tmp_path / "in", 3)
    with caplog.at_level(logging.INFO, logger="vagan.node"):
        assert send(files, node.port) == [0] * 3
        wait_for(lambda: any(d.attempts >= 1 for d in node.queue.deliveries()), 20, what="a failed attempt")
        assert _job_states(node) == [SENDING]
        receiver.start()
        series = _derived(receiver, 3)
        wait_for(lambda: _job_states(node) == [SENT], 10, what="job sent")
    assert [len(v) for v in series.values()] == [3]
    assert "failed (attempt 1 of 20)" in caplog.text


def test_destination_down_for_good_is_reported_and_the_data_kept(tmp_path, start_node, tiny_run, caplog):
    down = Receiver()  # never started
    node = start_node(node_config(tmp_path, down, str(tiny_run),
                                  retries={"attempts": 2, "backoff_seconds": 0.1, "max_backoff_seconds": 0.1}))
    files = make_series(tmp_path / "in", 2)
    with caplog.at_level(logging.INFO, logger="vagan.node"):
        assert send(files, node.port) == [0, 0]
        wait_for(lambda: _job_states(node) == [FAILED], 20, what="job failed")
    assert "delivery to pacs FAILED after 2 attempt(s)" in caplog.text
    assert len(node.spool.received_files(1)) == 2 and len(node.spool.derived_files(1)) == 2
    (delivery,) = node.queue.deliveries(1)
    assert delivery.state == "failed" and "did not answer" in delivery.last_error
    # the destination is back: `vagan serve CONFIG --retry-failed` queues the delivery again
    down.start()
    try:
        config_file = _write_config(tmp_path / "node.yaml", port=node.config.port, spool=node.config.spool,
                                    model=node.config.model, allowed_peers=["MODALITY"],
                                    destinations=[{"name": "pacs", "ae_title": "PACS", "host": HOST,
                                                   "port": down.port}])
        result = runner.invoke(app, ["serve", "--retry-failed", str(config_file)])
        assert result.exit_code == 0 and "1 job(s) with failed deliveries queued to send again" in result.output
        wait_for(lambda: _job_states(node) == [SENT], 20, what="job sent after --retry-failed")
        assert [len(v) for v in down.series().values()] == [2]
    finally:
        down.stop()


def test_a_failed_denoise_is_denoised_again_after_retry_failed(tmp_path, receiver, tiny_run, tiny_denoiser, caplog):
    """A denoise that fails (here: the model raises once) leaves the job ``failed`` with its received
    series kept; ``--retry-failed`` queues it to be denoised again, and it is delivered once."""
    calls = []

    def fails_once(hu):
        calls.append(hu.shape)
        if len(calls) == 1:
            raise RuntimeError("out of memory (simulated)")
        return tiny_denoiser(hu)

    config = node_config(tmp_path, receiver, str(tiny_run))
    node = Node(config, denoiser=fails_once)
    node.start()
    try:
        files = make_series(tmp_path / "in", 3)
        with caplog.at_level(logging.INFO, logger="vagan.node"):
            assert send(files, node.port) == [0] * 3
            wait_for(lambda: _job_states(node) == [FAILED], 20, what="the denoise to fail")
        assert "out of memory (simulated)" in node.queue.job(1).error and not receiver.series()
        config_file = _write_config(tmp_path / "node.yaml", port=config.port, spool=config.spool, model=config.model,
                                    allowed_peers=["MODALITY"], destinations=[{"name": "pacs", "ae_title": "PACS",
                                                                              "host": HOST, "port": receiver.port}])
        result = runner.invoke(app, ["serve", "--retry-failed", str(config_file)])
        assert result.exit_code == 0 and "1 job(s) that failed before sending queued to denoise again" in result.output
        series = _derived(receiver, 3)
        wait_for(lambda: _job_states(node) == [SENT], 20, what="job sent after --retry-failed")
        assert len(calls) == 2 and [len(v) for v in series.values()] == [3] and node.queue.job(1).error is None
        again = runner.invoke(app, ["serve", "--retry-failed", str(config_file)])
        assert again.exit_code == 0 and "no failed job to retry" in again.output
    finally:
        node.stop()


# -- resume after a crash ------------------------------------------------------------------------------
def test_a_fresh_node_resumes_the_queue_without_a_second_output_series(tmp_path, tiny_run, tiny_denoiser):
    """State on disk as a crash leaves it: a derived series published whose state was never recorded
    (the job still 'complete'). The next node adopts that series, never denoises again, and delivers it."""
    receiver = Receiver()  # down while the first node runs
    config = node_config(tmp_path, receiver, str(tiny_run))
    first = Node(config, denoiser=tiny_denoiser)
    first.start()
    files = make_series(tmp_path / "in", 3)
    assert send(files, first.port) == [0] * 3
    wait_for(lambda: first.queue.deliveries(), 20, what="the job queued for sending")
    derived_uid = first.queue.job(1).derived_series_uid
    first.stop()
    queue = Queue(Path(config.spool) / "queue.sqlite")  # as if the node died before recording 'denoised'
    queue._db.execute("DELETE FROM deliveries")
    assert queue.set_state(1, COMPLETE)
    queue.close()
    calls = []

    def counting(hu):
        calls.append(hu.shape)
        return tiny_denoiser(hu)

    receiver.start()
    second = Node(config, denoiser=counting)
    try:
        second.start()
        series = _derived(receiver, 3)
        wait_for(lambda: _job_states(second) == [SENT], 10, what="job sent")
    finally:
        second.stop()
        receiver.stop()
    assert calls == [] and list(series) == [derived_uid] and len(series[derived_uid]) == 3


def test_a_series_that_grows_after_its_stable_time_is_derived_again_whole(tmp_path, receiver, start_node, tiny_run,
                                                                          caplog):
    """Instances arriving after the series was taken as complete (a sender pausing longer than
    stable_seconds between associations) start a new job, whose derived series holds the whole series."""
    node = start_node(node_config(tmp_path, receiver, str(tiny_run), limits={"keep_sent": True}))
    files = make_series(tmp_path / "in", 4)
    assert send(files[:2], node.port) == [0, 0]
    wait_for(lambda: _job_states(node) == [SENT], 20, what="the first part sent")
    with caplog.at_level(logging.WARNING, logger="vagan.node"):
        assert send(files[2:], node.port) == [0, 0]
        wait_for(lambda: _job_states(node) == [SENT, SENT], 20, what="the grown series sent")
    assert "arrives again after job 1 took it as complete" in caplog.text
    assert sorted(len(v) for v in receiver.series().values()) == [2, 4]


def test_an_aborted_association_ends_its_series_with_what_was_stored(tmp_path, receiver, start_node, tiny_run, caplog):
    node = start_node(node_config(tmp_path, receiver, str(tiny_run)))
    files = make_series(tmp_path / "in", 4)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, [pydicom.uid.ExplicitVRLittleEndian])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    with caplog.at_level(logging.INFO, logger="vagan.node"):
        assoc = ae.associate(HOST, node.port, ae_title="VAGAN")
        assert [int(assoc.send_c_store(pydicom.dcmread(f)).Status) for f in files[:2]] == [0, 0]
        assoc.abort()
        ae.shutdown()
        series = _derived(receiver, 2)
    assert [len(v) for v in series.values()] == [2]
    assert caplog.text.count("aborted (by the peer, a timeout or a protocol error); job(s) 1 keep what was stored") == 1


def test_return_to_sender(tmp_path, start_node, tiny_run):
    modality = Receiver(ae_title="MODALITY").start()  # the sender's own SCP
    try:
        node = start_node(node_config(tmp_path, None, str(tiny_run), return_to_sender=True,
                                      allowed_peers=({"ae_title": "MODALITY", "host": HOST, "port": modality.port},)))
        assert send(make_series(tmp_path / "in", 3), node.port) == [0] * 3
        series = _derived(modality, 3)
        wait_for(lambda: _job_states(node) == [SENT], 10, what="job sent")
    finally:
        modality.stop()
    assert [len(v) for v in series.values()] == [3]
    assert [d.destination for d in node.queue.deliveries(1)] == ["sender-MODALITY"]


def test_the_documented_config_is_valid(tmp_path):
    text = (Path(__file__).resolve().parents[2] / "docs" / "node.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    from vagan.node.config import load_node_config

    config = load_node_config(_write_config(tmp_path / "node.yaml", **yaml.safe_load(block)))
    assert config.port == 11112 and config.destinations[0].label == "pacs"
    assert config.allowed_peers[0].port == 4242 and config.retries.delay(3) == 40.0


def test_a_series_sent_again_in_full_makes_no_second_output(tmp_path, receiver, start_node, tiny_run, caplog):
    """A sender that retries a transfer the node had already taken in full (Orthanc resuming its job after a
    crash, a PACS resending after a timeout): no second derived series."""
    node = start_node(node_config(tmp_path, receiver, str(tiny_run)))
    files = make_series(tmp_path / "in", 3)
    assert send(files, node.port) == [0] * 3
    wait_for(lambda: _job_states(node) == [SENT], 20, what="the series sent")
    with caplog.at_level(logging.WARNING, logger="vagan.node"):
        assert send(files, node.port) == [0] * 3
        wait_for(lambda: _job_states(node) == [SENT, DUPLICATE], 20, what="the second transfer taken as a duplicate")
        wait_for(lambda: "sent again with no new instance (3): job 1's derived series" in caplog.text, 5,
                 what="the duplicate's line")
        # the derived series itself, sent back (an auto-forwarding rule): refused, never denoised twice
        derived = next(iter(receiver.series().values()))
        assert send(derived[:1], node.port) == [0xA900]
    assert "already denoised by vagan" in caplog.text
    time.sleep(0.5)
    assert [len(v) for v in receiver.series().values()] == [3] and receiver.stores == 3


def test_retry_failed_leaves_a_job_whose_series_a_later_job_took_over(tmp_path):
    """A failed denoise whose series was sent again (a later job merged it and made the derived series) is not
    queued again by --retry-failed: that would make a second output series. One whose later job also failed
    before any output is queued again."""
    queue = Queue(tmp_path / "queue.sqlite")
    try:
        a, _ = queue.receiving_job("1.2.3", "1.2.3.4", "MODALITY", HOST)
        assert queue.set_state(a.id, FAILED, error="out of memory")
        b, created = queue.receiving_job("1.2.3", "1.2.3.4", "MODALITY", HOST)
        assert created and queue.set_state(b.id, SENT, derived_series_uid="1.2.3.5", derived_instances=2)
        c, _ = queue.receiving_job("1.2.3", "1.2.3.9", "MODALITY", HOST)
        assert queue.set_state(c.id, FAILED, error="out of memory")
        d, _ = queue.receiving_job("1.2.3", "1.2.3.9", "MODALITY", HOST)
        assert queue.set_state(d.id, FAILED, error="out of memory again")
        assert queue.retry_failed() == (0, 2)  # c and d: series 1.2.3.9 has no output yet
        assert [j.state for j in (queue.job(a.id), queue.job(c.id), queue.job(d.id))] == [FAILED, COMPLETE, COMPLETE]
    finally:
        queue.close()


def test_a_destination_gone_from_the_config_is_never_guessed(tmp_path, tiny_run):
    """Deliveries name their destination; when the config no longer has it (renamed, removed), how to reach it
    (TLS or not) is unknown: reached_by_tls says None and the node fails the delivery instead of sending."""
    config = node_config(tmp_path, None, str(tiny_run),
                         destinations=({"name": "pacs", "ae_title": "PACS", "host": HOST, "port": 104},),
                         allowed_peers=({"ae_title": "MOD", "host": HOST, "port": 104},))
    assert config.reached_by_tls("pacs") is False and config.reached_by_tls("sender-MOD") is False
    assert config.reached_by_tls("old-pacs") is None
