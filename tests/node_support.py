"""Helpers of the node tests (tests/node): a tiny trained model, tiny CT series, a pynetdicom receiver standing in
for a PACS, and a sender standing in for a modality. Every socket is on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification
from support import tiny_config, tiny_data

from vagan.io.dicom import write_dicom_series
from vagan.node.config import NodeConfig

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 20.0, step: float = 0.05, what: str = "condition"):
    """Poll ``condition`` until it is truthy (returned) or ``timeout`` passes (a failed assert)."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A g_psnr run trained for 2 steps on tiny patches (as tests/inference do)."""
    from vagan.training.trainer import train

    run = tmp_path_factory.mktemp("node-run") / "g_psnr"
    train(tiny_config("g_psnr", "stages.*.max_steps=2"), run, data=tiny_data())
    return run


@pytest.fixture(scope="session")
def tiny_denoiser(tiny_run):
    from vagan.inference.denoise import NetworkDenoiser
    from vagan.inference.model_loading import load_trained_model

    return NetworkDenoiser(load_trained_model(tiny_run), batch_size=8, name="tiny")


def make_series(folder: Path, slices: int = 4, size: int = 32, study_uid: str | None = None, seed: int = 0,
                description: str = "test CT") -> list[Path]:
    """A CT series of ``slices`` slices ``size``² written by vagan's writer (CT Image Storage, explicit LE)."""
    rng = np.random.default_rng(seed)
    hu = np.full((slices, size, size), -1000.0, np.float32)
    hu[:, 4:-4, 4:-4] = 40.0 + rng.normal(0, 30, (slices, size - 8, size - 8))
    write_dicom_series(hu, folder, series_description=description, pixel_spacing_mm=(0.7, 0.7),
                       slice_thickness_mm=1.0, study_instance_uid=study_uid or generate_uid(),
                       patient_id="NODE-TEST")
    return sorted(folder.glob("*.dcm"))


class Receiver:
    """A C-STORE SCP on loopback that keeps what it receives (a destination PACS); can go down and up."""

    def __init__(self, ae_title: str = "PACS", port: int | None = None) -> None:
        self.ae_title = ae_title
        self.port = port or free_port()
        self.received: dict[str, pydicom.Dataset] = {}
        self.stores = 0
        self.lock = threading.Lock()
        self.server = None
        self.on_store = None  # called with the count of stores so far, after each one

    def _on_store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self.lock:
            self.received[str(ds.SOPInstanceUID)] = ds
            self.stores += 1
            count = self.stores
        if self.on_store is not None:
            self.on_store(count)
        return 0x0000

    def start(self, ssl_context=None) -> Receiver:
        """Listen (by DICOM TLS with ``ssl_context``)."""
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.add_supported_context(Verification)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 10
        self.server = ae.start_server((HOST, self.port), block=False, ssl_context=ssl_context,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def series(self) -> dict[str, list[pydicom.Dataset]]:
        with self.lock:
            out: dict[str, list[pydicom.Dataset]] = {}
            for ds in self.received.values():
                out.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
            return out


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def send(files, port: int, calling_ae: str = "MODALITY", called_ae: str = "VAGAN", pause_after: int | None = None,
         pause: float = 0.0, contexts=(CTImageStorage,), after_each=None, tls=None):
    """C-STORE ``files`` in one association (by DICOM TLS with the context ``tls``); the status codes
    (None: no association)."""
    ae = AE(ae_title=calling_ae)
    for context in contexts:
        ae.add_requested_context(context, [ExplicitVRLittleEndian])
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 15
    ae.connection_timeout = 5
    assoc = ae.associate(HOST, port, ae_title=called_ae, tls_args=(tls, HOST) if tls is not None else None)
    if not assoc.is_established:
        ae.shutdown()
        return None
    codes = []
    try:
        for i, path in enumerate(files):
            status = assoc.send_c_store(path)  # a Dataset, or a file path (read, or streamed when chunked)
            codes.append(int(status.Status) if status else None)
            if after_each is not None:
                after_each(i + 1, codes[-1])
            if codes[-1] is None:
                break
            if pause_after is not None and i + 1 == pause_after:
                time.sleep(pause)
        if assoc.is_established:
            assoc.release()
    finally:
        if assoc.is_established:
            assoc.abort()
        ae.shutdown()
    return codes


def node_config(tmp_path: Path, receiver: Receiver | None, model: str, **changes) -> NodeConfig:
    data = dict(ae_title="VAGAN", host=HOST, port=free_port(), spool=str(tmp_path / "spool"), model=model,
                engine="torch", precision="fp32", allowed_peers=("MODALITY",),
                destinations=({"name": "pacs", "ae_title": receiver.ae_title, "host": HOST,
                               "port": receiver.port},) if receiver is not None else (),
                stable_seconds=0.5, retries={"attempts": 3, "backoff_seconds": 0.2, "max_backoff_seconds": 1.0},
                timeouts={"network": 10, "acse": 10, "dimse": 10, "connect": 3})
    data.update(changes)
    from vagan.config_schema import build_dataclass

    return build_dataclass(NodeConfig, data, "")


__all__ = ["HOST", "MRImageStorage", "NodeProcess", "Receiver", "free_port", "make_series", "node_config", "send", "wait_for"]


class NodeProcess:
    """``vagan serve CONFIG`` as a child process (so that it can be killed with SIGKILL), its log in a file."""

    def __init__(self, folder: Path, config: dict) -> None:
        import yaml

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = self.folder / "node.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.port = int(config["port"])
        self.spool = Path(config["spool"])
        self.log = self.folder / "node.log"
        self.proc = None

    def start(self, timeout: float = 90.0) -> NodeProcess:
        import os
        import subprocess
        import sys

        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "vagan", "serve", str(self.config_path)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        wait_for(lambda: self.proc.poll() is not None or "listening on" in self.log.read_text()[offset:], timeout,
                 what="the node to listen")
        if self.proc.poll() is not None:
            raise RuntimeError(f"vagan serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as a crash or `kill -9`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except Exception:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def status(self) -> dict:
        import json

        try:
            return json.loads((self.spool / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def jobs(self) -> list[dict]:
        return self.status().get("jobs", [])
