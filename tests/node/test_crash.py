"""`vagan serve` killed with SIGKILL mid-receive and mid-send, then restarted: nothing acknowledged is
lost, nothing is half-sent as if complete, and the derived series is one series with every instance."""

from __future__ import annotations

import os
import signal

import pydicom
import pytest
from node_support import HOST, NodeProcess, Receiver, free_port, make_series, send, wait_for

pytestmark = pytest.mark.slow


def _config(tmp_path, receiver: Receiver, model) -> dict:
    return {"ae_title": "VAGAN", "host": HOST, "port": free_port(), "spool": str(tmp_path / "spool"),
            "model": str(model), "engine": "torch", "precision": "fp32", "allowed_peers": ["MODALITY"],
            "destinations": [{"name": "pacs", "ae_title": receiver.ae_title, "host": HOST, "port": receiver.port}],
            "stable_seconds": 0.5, "retries": {"attempts": 5, "backoff_seconds": 0.2, "max_backoff_seconds": 1},
            "timeouts": {"network": 10, "acse": 10, "dimse": 10, "connect": 3}}


def _received_files(spool) -> list:
    return sorted(p for p in (spool / "jobs").glob("*/received/*.dcm"))


def test_killed_mid_receive_keeps_every_acknowledged_instance_and_resumes(tmp_path, receiver, tiny_run):
    node = NodeProcess(tmp_path / "node", _config(tmp_path, receiver, tiny_run)).start()
    files = make_series(tmp_path / "in", 8)
    acknowledged = []

    def kill_after_four(i, code):
        if code == 0:
            acknowledged.append(i)
        if i == 4:
            os.kill(node.proc.pid, signal.SIGKILL)

    try:
        codes = send(files, node.port, after_each=kill_after_four)
        node.proc.wait(10)
        assert codes[:4] == [0] * 4 and codes[-1] is None  # the association died with the node
        on_disk = {p.stem for p in _received_files(node.spool)}
        sent = {str(pydicom.dcmread(f).SOPInstanceUID) for f in files[:len(acknowledged)]}
        assert sent <= on_disk  # every success answered is an instance in the spool
        assert receiver.series() == {}
        node.start()
        assert send(files, node.port) == [0] * 8  # the sender tries the series again
        wait_for(lambda: sum(len(v) for v in receiver.series().values()) == 8, 60, what="8 derived instances")
        wait_for(lambda: [j["state"] for j in node.jobs()] == ["sent"], 20, what="the job sent")
    finally:
        node.stop()
    series = receiver.series()
    assert len(series) == 1 and [len(v) for v in series.values()] == [8]


def test_killed_mid_send_resends_the_same_series_once(tmp_path, receiver, tiny_run):
    node = NodeProcess(tmp_path / "node", _config(tmp_path, receiver, tiny_run)).start()
    files = make_series(tmp_path / "in", 6)

    def kill_at_third(count):
        if count == 3:
            os.kill(node.proc.pid, signal.SIGKILL)

    receiver.on_store = kill_at_third
    try:
        assert send(files, node.port) == [0] * 6
        wait_for(lambda: node.proc.poll() is not None, 60, what="the node killed mid-send")
        receiver.on_store = None
        first = receiver.series()
        assert [len(v) for v in first.values()] == [3]  # half a series arrived, and the queue knows it is not sent
        node.start()
        wait_for(lambda: [j["state"] for j in node.jobs()] == ["sent"], 60, what="the job sent after the restart")
    finally:
        node.stop()
    series = receiver.series()
    assert list(series) == list(first)  # the same derived series, completed, not a second one
    assert [len(v) for v in series.values()] == [6] and receiver.stores >= 6 + 3 - 1
    assert "resuming in state sending" in node.log.read_text()
