"""`vagan serve` against a real Orthanc (Debian's ``orthanc`` package; skipped without it), all on
127.0.0.1: Orthanc sends a series to vagan, vagan returns the derived series, Orthanc holds it as a new
series of the same study with every instance; Orthanc down while vagan sends, then up; vagan killed
mid-job, then restarted. Orthanc is driven through its REST API."""

from __future__ import annotations

import time
import urllib.error

import pydicom
import pytest
from node_support import HOST, MRImageStorage, NodeProcess, free_port, make_series, wait_for
from orthanc_support import ORTHANC, Orthanc

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed (apt-get install -y orthanc)")]

SLICES, SIDE = 8, 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_run):
    """One Orthanc and one vagan node that know each other."""
    folder = tmp_path_factory.mktemp("orthanc-node")
    node_port = free_port()
    orthanc = Orthanc(folder / "orthanc", {"vagan": ("VAGAN", HOST, node_port)}).start()
    node = NodeProcess(folder / "node", {
        "ae_title": "VAGAN", "host": HOST, "port": node_port, "spool": str(folder / "spool"), "model": str(tiny_run),
        "engine": "torch", "precision": "fp32", "allowed_peers": [f"ORTHANC@{HOST}"],
        "destinations": [{"name": "orthanc", "ae_title": "ORTHANC", "host": HOST, "port": orthanc.dicom_port}],
        "stable_seconds": 1.0, "retries": {"attempts": 30, "backoff_seconds": 0.5, "max_backoff_seconds": 1.0},
        "timeouts": {"network": 15, "acse": 10, "dimse": 15, "connect": 3}})
    try:
        node.start()
        yield orthanc, node, folder
    finally:
        node.stop()
        orthanc.stop()


def _upload(orthanc: Orthanc, folder, seed: int) -> tuple[str, str, str]:
    """A new study with one CT series in Orthanc: (study UID, series UID, Orthanc's series id)."""
    files = make_series(folder / f"series-{seed}", SLICES, SIDE, seed=seed)
    answers = orthanc.upload(files)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    return str(first.StudyInstanceUID), str(first.SeriesInstanceUID), answers[0]["ParentSeries"]


def _derived_in_orthanc(orthanc: Orthanc, study: str, source: str, timeout: float = 60.0) -> dict[str, int]:
    def done():
        series = orthanc.series_in_study(study)
        derived = {uid: n for uid, n in series.items() if uid != source}
        return derived if derived and all(n == SLICES for n in derived.values()) else None

    return wait_for(done, timeout, step=0.2, what="Orthanc to hold the derived series")


def test_orthanc_sends_a_series_and_holds_the_derived_series(setup):
    orthanc, node, folder = setup
    study, source, series_id = _upload(orthanc, folder, seed=1)
    orthanc.store_to("vagan", [series_id], timeout=30)
    derived = _derived_in_orthanc(orthanc, study, source)
    assert len(derived) == 1
    (uid,) = derived
    found = orthanc.post("/tools/find", {"Level": "Series", "Query": {"SeriesInstanceUID": uid}, "Expand": True})
    tags = found[0]["MainDicomTags"]
    assert "vagan" in tags.get("SeriesDescription", "") and found[0]["ParentStudy"] == \
        orthanc.post("/tools/lookup", study.encode())[0]["ID"]
    time.sleep(1.5)  # nothing more arrives: one derived series
    assert len(orthanc.series_in_study(study)) == 2


def test_a_non_ct_series_from_orthanc_is_refused_and_never_processed(setup):
    orthanc, node, folder = setup
    files = make_series(folder / "series-mr", 2, SIDE, seed=5)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.Modality = "MR"
        ds.save_as(path, enforce_file_format=True)
    answers = orthanc.upload(files)
    with pytest.raises(urllib.error.HTTPError):  # Orthanc reports the failed C-STORE
        orthanc.store_to("vagan", [answers[0]["ParentSeries"]], timeout=20)
    series = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    time.sleep(1.5)
    assert not [j for j in node.jobs() if j["series_uid"] == series]


def test_orthanc_down_while_vagan_sends_then_up(setup):
    orthanc, node, folder = setup
    study, source, series_id = _upload(orthanc, folder, seed=2)
    orthanc.store_to("vagan", [series_id], timeout=30)
    orthanc.proc.kill()  # down at once (SIGKILL), before vagan's stable time has passed
    orthanc.proc.wait(10)
    orthanc.proc = None

    def failed_attempt():
        jobs = [j for j in node.jobs() if j["series_uid"] == source]
        return jobs and any(d["attempts"] >= 1 and d["state"] == "pending" for d in jobs[0]["deliveries"])

    wait_for(failed_attempt, 30, step=0.2, what="a failed delivery attempt")
    orthanc.start()  # Orthanc may resume its own store job, killed with it, and send the series again
    derived = _derived_in_orthanc(orthanc, study, source)
    assert len(derived) == 1
    assert "failed (attempt 1 of 30)" in node.log.read_text()
    time.sleep(3)
    assert len(orthanc.series_in_study(study)) == 2  # still one derived series


def test_vagan_killed_mid_receive_then_restarted_delivers_once(setup):
    """SIGKILL while Orthanc is still sending; Orthanc's job fails, the series is sent again after the
    restart: one derived series with every instance (what was acknowledged before the kill is kept)."""
    orthanc, node, folder = setup
    slices = 32
    files = make_series(folder / "series-killed", slices, SIDE, seed=4)
    answers = orthanc.upload(files)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    study, source = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    orthanc.post("/modalities/vagan/store", {"Resources": [answers[0]["ParentSeries"]], "Asynchronous": True})
    spooled = lambda: len(list(node.spool.glob("jobs/*/received/*.dcm")))  # noqa: E731
    wait_for(lambda: spooled() >= 3, 30, step=0.005, what="Orthanc's first instances in the spool")
    node.kill()
    assert spooled() < slices  # killed mid-receive
    node.start()
    orthanc.store_to("vagan", [answers[0]["ParentSeries"]], timeout=60)  # the failed transfer, again

    def done():
        derived = {u: n for u, n in orthanc.series_in_study(study).items() if u != source}
        return derived if derived and list(derived.values()) == [slices] else None

    derived = wait_for(done, 60, step=0.2, what="Orthanc to hold the derived series")
    time.sleep(1.5)
    assert len(derived) == 1 and len(orthanc.series_in_study(study)) == 2
    jobs = [j for j in node.jobs() if j["series_uid"] == source]
    assert [j["state"] for j in jobs] == ["sent"] and jobs[0]["instances"] == slices
