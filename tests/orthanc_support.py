"""A real Orthanc (Debian's ``orthanc`` package) started by the node tests on free loopback ports.

Its REST API is bound by Orthanc to every interface, so remote access is off (``RemoteAccessAllowed``
false: only 127.0.0.1 is answered) and no DICOM peer other than the configured ones may store or echo
(``DicomAlwaysAllowStore``/``Echo`` false, ``DicomCheckModalityHost`` true). Every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from node_support import HOST, free_port

ORTHANC = shutil.which("Orthanc") or (("/usr/sbin/Orthanc") if Path("/usr/sbin/Orthanc").is_file() else None)


class Orthanc:
    """One Orthanc process with its own storage folder; :meth:`stop` then :meth:`start` keeps its data."""

    def __init__(self, folder: Path, modalities: dict[str, tuple[str, str, int] | dict], ae_title: str = "ORTHANC",
                 lua: str | None = None, extra: dict | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        scripts = []
        if lua is not None:  # Orthanc's Lua callbacks, e.g. a ReceivedInstanceFilter
            scripts = [str(self.folder / "callbacks.lua")]
            Path(scripts[0]).write_text(lua)
        self.ae_title = ae_title
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.config = self.folder / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "vagan-test", "StorageDirectory": str(self.folder / "db"), "IndexDirectory": str(self.folder / "db"),
            "DicomAet": ae_title, "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
            "DicomAlwaysAllowStore": False, "DicomAlwaysAllowEcho": False, "DicomCheckModalityHost": True,
            "DicomCheckCalledAet": False, "DicomScuTimeout": 10, "DicomScpTimeout": 10, "HttpTimeout": 10,
            "StableAge": 1, "ConcurrentJobs": 2, "HttpThreadsCount": 8, "DicomThreadsCount": 4,
            "DicomModalities": {name: entry if isinstance(entry, dict) else list(entry)
                                for name, entry in modalities.items()}, "LuaScripts": scripts, **(extra or {}),
        }))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def start(self, timeout: float = 30.0) -> Orthanc:
        log = open(self.folder / "orthanc.log", "ab")
        self.proc = subprocess.Popen([ORTHANC, str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: "
                                   f"{(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout:g} s")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    # -- REST --------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json",
              timeout: float = 60.0):
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": content_type} if body is not None else {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
        return json.loads(data) if data else None

    def get(self, path: str):
        return self._call("GET", path, timeout=10)

    def post(self, path: str, payload, timeout: float = 60.0):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self._call("POST", path, body, "application/dicom" if isinstance(payload, bytes) else "application/json",
                          timeout=timeout)

    def upload(self, files) -> list[dict]:
        return [self.post("/instances", Path(f).read_bytes()) for f in files]

    def store_to(self, modality: str, resources: list[str], timeout: float = 60.0):
        """C-STORE from Orthanc to one of its modalities, synchronously (bounded by ``timeout``)."""
        return self.post(f"/modalities/{modality}/store", {"Resources": resources, "Synchronous": True,
                                                          "Timeout": int(timeout)}, timeout=timeout + 10)

    def series_in_study(self, study_uid: str) -> dict[str, int]:
        """SeriesInstanceUID -> number of instances Orthanc holds, for one study."""
        found = self.post("/tools/find", {"Level": "Series", "Query": {"StudyInstanceUID": study_uid},
                                          "Expand": True})
        return {s["MainDicomTags"]["SeriesInstanceUID"]: len(s["Instances"]) for s in found}
