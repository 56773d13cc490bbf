"""`vagan serve` against a real Orthanc (Debian's ``orthanc`` package; skipped without it), all on
127.0.0.1: Orthanc sends a series to vagan, vagan returns the derived series, Orthanc holds it as a new
series of the same study with every instance; Orthanc down while vagan sends, then up; vagan killed
mid-receive and mid-send, then restarted; an Orthanc that is not an allowed peer; two series at once; a
series not complete when the stable time passes. Orthanc is driven through its REST API."""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request

import pydicom
import pytest
from node_support import HOST, MRImageStorage, NodeProcess, free_port, make_series, wait_for
from orthanc_support import ORTHANC, Orthanc

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed (apt-get install -y orthanc)")]

SLICES, SIDE = 8, 64

SLOW_ARCHIVE = """
-- A slow archive for the mid-send test: each instance of a derived 'slow-send' series that arrives by
-- DICOM costs Orthanc 0.3 s of CPU before it is stored, so that vagan can be killed while it sends.
function ReceivedInstanceFilter(dicom, origin, info)
  local description = dicom.SeriesDescription or ''
  if origin.RequestOrigin == 'DicomProtocol' and string.find(description, 'slow-send', 1, true) then
    local start = os.clock()
    while os.clock() - start < 0.3 do end
  end
  return true
end
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_run):
    """One Orthanc and one vagan node that know each other."""
    folder = tmp_path_factory.mktemp("orthanc-node")
    node_port = free_port()
    orthanc = Orthanc(folder / "orthanc", {"vagan": ("VAGAN", HOST, node_port)}, lua=SLOW_ARCHIVE).start()
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


def _upload(orthanc: Orthanc, folder, seed: int, slices: int = SLICES, description: str = "test CT"
            ) -> tuple[str, str, str]:
    """A new study with one CT series in Orthanc: (study UID, series UID, Orthanc's series id)."""
    files = make_series(folder / f"series-{seed}", slices, SIDE, seed=seed, description=description)
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


def _derived_sources(orthanc: Orthanc, study: str, source: str) -> dict[str, list[str]]:
    """Derived series UID -> the source SOP Instance UIDs its instances refer to (SourceImageSequence),
    read from the files Orthanc holds."""
    out: dict[str, list[str]] = {}
    for series in orthanc.post("/tools/find", {"Level": "Series", "Query": {"StudyInstanceUID": study}, "Expand": True}):
        uid = series["MainDicomTags"]["SeriesInstanceUID"]
        if uid == source:
            continue
        for instance in series["Instances"]:
            request = urllib.request.Request(f"{orthanc.url}/instances/{instance}/file")
            with urllib.request.urlopen(request, timeout=10) as response:
                ds = pydicom.dcmread(io.BytesIO(response.read()), stop_before_pixels=True)
            out.setdefault(uid, []).append(str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID))
    return out


def test_vagan_killed_mid_send_to_orthanc_then_restarted_completes_the_same_series(setup):
    """SIGKILL while Orthanc is storing the derived series (slowed by a Lua filter): after the restart vagan
    sends the same series again, Orthanc completes it: one derived series, every instance, no second one."""
    orthanc, node, folder = setup
    slices = 16
    study, source, series_id = _upload(orthanc, folder, seed=6, slices=slices, description="slow-send")
    orthanc.store_to("vagan", [series_id], timeout=30)

    def partly_stored():
        derived = {u: n for u, n in orthanc.series_in_study(study).items() if u != source}
        return derived if derived and 1 <= sum(derived.values()) < slices else None

    partial = wait_for(partly_stored, 60, step=0.02, what="Orthanc to hold part of the derived series")
    node.kill()
    held = {u: n for u, n in orthanc.series_in_study(study).items() if u != source}
    assert list(held) == list(partial) and sum(held.values()) < slices  # killed mid-send
    node.start()

    def done():
        derived = {u: n for u, n in orthanc.series_in_study(study).items() if u != source}
        return derived if list(derived.values()) == [slices] else None

    assert list(wait_for(done, 90, step=0.2, what="the derived series completed")) == list(partial)
    wait_for(lambda: [j["state"] for j in node.jobs() if j["series_uid"] == source] == ["sent"], 30,
             what="the job sent after the restart")
    assert "resuming in state sending" in node.log.read_text()
    sources = _derived_sources(orthanc, study, source)
    assert sorted(sources[list(partial)[0]]) == sorted(
        i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.get(f"/series/{series_id}/instances"))


def test_an_orthanc_that_is_not_an_allowed_peer_is_refused(setup):
    """Another Orthanc (AE title STRANGER) that knows the node sends a series: the association is rejected,
    Orthanc reports the failure, the node stores nothing and keeps serving."""
    orthanc, node, folder = setup
    stranger = Orthanc(folder / "stranger", {"vagan": ("VAGAN", HOST, node.port)}, ae_title="STRANGER").start()
    try:
        study, source, series_id = _upload(stranger, folder, seed=7, slices=2)
        with pytest.raises(urllib.error.HTTPError):
            stranger.store_to("vagan", [series_id], timeout=20)
    finally:
        stranger.stop()
    assert not [j for j in node.jobs() if j["series_uid"] == source]
    assert not [p for p in node.spool.glob("jobs/*/received/*.dcm") if source in p.read_bytes().decode("latin-1")]
    assert "refused association from STRANGER at 127.0.0.1: not an allowed peer" in node.log.read_text()
    study, source, series_id = _upload(orthanc, folder, seed=8)  # the allowed Orthanc is still served
    orthanc.store_to("vagan", [series_id], timeout=30)
    assert len(_derived_in_orthanc(orthanc, study, source)) == 1


def test_two_series_sent_by_orthanc_at_once_both_come_back_whole(setup):
    orthanc, node, folder = setup
    sent = [_upload(orthanc, folder, seed=seed) for seed in (9, 10)]
    jobs = [orthanc.post(f"/modalities/vagan/store", {"Resources": [series_id], "Asynchronous": True})
            for _, _, series_id in sent]
    assert all("ID" in job for job in jobs)
    for study, source, _ in sent:
        derived = _derived_in_orthanc(orthanc, study, source)
        assert list(derived.values()) == [SLICES]
    time.sleep(1.5)
    for study, source, _ in sent:
        assert len(orthanc.series_in_study(study)) == 2
        assert [j["state"] for j in node.jobs() if j["series_uid"] == source] == ["sent"]


def test_a_series_not_complete_when_the_stable_time_passes_loses_no_instance(setup):
    """Orthanc sends half a series, then (after vagan's stable time) the other half: vagan derives what it
    has, then the rest as a second job (docs/node.md "When is a series complete"). Every source instance
    has a derived instance in Orthanc, none is lost (the second job may derive the first half again, when
    the first job's files are still in the spool)."""
    orthanc, node, folder = setup
    study, source, series_id = _upload(orthanc, folder, seed=11)
    instances = sorted(i["ID"] for i in orthanc.get(f"/series/{series_id}/instances"))
    orthanc.store_to("vagan", instances[: SLICES // 2], timeout=30)
    wait_for(lambda: [j["state"] for j in node.jobs() if j["series_uid"] == source] == ["sent"], 60,
             what="the first half derived and sent")
    orthanc.store_to("vagan", instances[SLICES // 2:], timeout=30)
    wait_for(lambda: [j["state"] for j in node.jobs() if j["series_uid"] == source] == ["sent", "sent"], 60,
             what="the second half derived and sent")
    assert "arrives again after job" in node.log.read_text()
    sources = _derived_sources(orthanc, study, source)
    referenced = sorted(uid for uids in sources.values() for uid in uids)
    expected = sorted(orthanc.get(f"/instances/{i}")["MainDicomTags"]["SOPInstanceUID"] for i in instances)
    assert set(referenced) == set(expected)  # every source instance was derived
    assert len(sources) == 2 and sum(map(len, sources.values())) <= SLICES + SLICES // 2
