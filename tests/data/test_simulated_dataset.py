"""`vagan simulate` writes a paired dataset that loads into the patch dataset."""

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from vagan.cli import app
from vagan.data.paired import load_split
from vagan.data.patches import PatchPairDataset
from vagan.io.dicom import read_dicom_series
from vagan.io.mayo import list_mayo_patients, load_mayo_pair

runner = CliRunner()
FAST = ["--set", "simulation.n_views=360", "--set", "simulation.n_detectors=368",
        "--set", "simulation.detector_spacing_mm=2.5716"]


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "phantom"
    result = runner.invoke(app, ["simulate", str(out), "--device", "cpu", "--set", "patients=2",
                                 "--set", "slices_per_patient=2", "--set", "size=128", "--set", "write_truth=true",
                                 *FAST])
    assert result.exit_code == 0, result.output
    return out


def test_layout_manifest_and_pairs(phantom_dataset):
    manifest = json.loads((phantom_dataset / "manifest.json").read_text())
    assert [p["id"] for p in manifest["patients"]] == ["PH001", "PH002"]
    assert list_mayo_patients(phantom_dataset) == ["PH001", "PH002"]
    pair = load_mayo_pair(phantom_dataset, "PH001")
    assert pair.ldct.hu.shape == pair.ndct.hu.shape == (2, 128, 128)
    full = pydicom.dcmread(next((phantom_dataset / "PH001" / "full_1mm").glob("*.dcm")))
    quarter = pydicom.dcmread(next((phantom_dataset / "PH001" / "quarter_1mm").glob("*.dcm")))
    assert full.StudyInstanceUID == quarter.StudyInstanceUID
    assert full.SeriesInstanceUID != quarter.SeriesInstanceUID
    assert "25% dose" in quarter.SeriesDescription


def test_quarter_dose_noise_is_about_twice_full_dose(phantom_dataset):
    truth = read_dicom_series(phantom_dataset / "PH001" / "truth_1mm").hu
    pair = load_mayo_pair(phantom_dataset, "PH001")
    body = truth > -500
    nd = (pair.ndct.hu - truth)[body]
    ld = (pair.ldct.hu - truth)[body]
    assert 1.7 < ld.std() / nd.std() < 2.3  # 1/sqrt(0.25) = 2, plus a little electronic noise
    assert abs(ld.mean()) < 5.0 and abs(nd.mean()) < 5.0


def test_dataset_loads_into_patches(phantom_dataset):
    pairs = load_split(phantom_dataset, {"train": ["PH001"], "val": ["PH002"], "test": []}, 0, "train")
    patches = PatchPairDataset(pairs, patch_size=64, patches_per_slice=3, seed=0)
    item = patches[0]
    assert len(patches) == 6 and item["ldct"].shape == (1, 64, 64)
    assert not np.array_equal(item["ldct"].numpy(), item["ndct"].numpy())


def test_simulate_from_a_real_series(tmp_path):
    series = tmp_path / "ndct"
    series.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), series / "CT_small.dcm")
    out = tmp_path / "pairs"
    result = runner.invoke(app, ["simulate", str(out), "--from", str(series), "--dose", "0.5", *FAST])
    assert result.exit_code == 0, result.output
    (patient,) = [p for p in out.iterdir() if p.is_dir()]
    source = read_dicom_series(series)
    full = read_dicom_series(next(patient.glob("full_*")))
    quarter = read_dicom_series(next(patient.glob("quarter_*")))
    assert np.abs(full.hu - source.hu).max() <= 1.0  # the NDCT is the input, unchanged
    assert 1.0 < np.std(quarter.hu - full.hu) < 200.0  # noise was inserted


def test_existing_output_and_bad_settings(phantom_dataset, tmp_path):
    before = sorted(p.name for p in phantom_dataset.iterdir())
    result = runner.invoke(app, ["simulate", str(phantom_dataset)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert sorted(p.name for p in phantom_dataset.iterdir()) == before
    result = runner.invoke(app, ["simulate", str(tmp_path / "x"), "--dose", "1.5"])
    assert result.exit_code == 2 and "dose" in result.output
    result = runner.invoke(app, ["simulate", str(tmp_path / "x"), "--set", "simulation.i00=1"])
    assert result.exit_code == 2 and "did you mean 'i0'" in result.output
    assert not (tmp_path / "x").exists()


def test_overwrite_never_replaces_a_folder_vagan_did_not_write(tmp_path):
    user = tmp_path / "u"
    user.mkdir()
    (user / "thesis.docx").write_text("years of work")
    result = runner.invoke(app, ["simulate", str(user), "--overwrite", "--set", "patients=1",
                                 "--set", "slices_per_patient=1", "--set", "size=64"])
    assert result.exit_code == 2 and "not written by vagan" in result.output and "thesis.docx" in result.output
    assert sorted(p.name for p in user.iterdir()) == ["thesis.docx"]


def test_a_folder_of_series_with_a_loose_file_is_read_as_series(tmp_path):
    from vagan.io.dicom import write_dicom_series

    tree = tmp_path / "tree"
    for pid in ("A", "B"):
        write_dicom_series(np.full((2, 64, 64), -500.0, np.float32), tree / pid, series_description="ndct",
                           patient_id=pid, pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    (tree / "README.txt").write_text("two patients")
    result = runner.invoke(app, ["simulate", str(tmp_path / "pairs"), "--from", str(tree), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir() if p.is_dir()) == ["A", "B"]


def test_unusable_series_are_listed_with_a_reason_and_nothing_usable_is_one_error(tmp_path):
    from vagan.io.dicom import write_dicom_series

    tree = tmp_path / "tree"
    ok = np.full((2, 64, 64), -1000.0, np.float32)
    ok[:, 8:-8, 8:-8] = 40.0
    for folder, pid, thickness in (("a_ok", "A", 1.0), ("b_second_series_of_A", "A", 1.0), ("c_A_at_3mm", "A", 3.0)):
        write_dicom_series(ok, tree / folder, series_description="ndct", patient_id=pid,
                           pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=thickness)
    (tree / "d_broken").mkdir()
    (tree / "d_broken" / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 10)
    before = sorted(str(p) for p in tree.rglob("*"))
    result = runner.invoke(app, ["simulate", str(tmp_path / "pairs"), "--from", str(tree), "--device", "cpu", *FAST])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert [p["id"] for p in manifest["patients"]] == ["A", "A"]  # 1 mm and 3 mm pairs in one patient folder
    assert sorted(p.name for p in (tmp_path / "pairs" / "A").iterdir() if p.is_dir()) == [
        "full_1mm", "full_3mm", "quarter_1mm", "quarter_3mm"]
    reasons = {Path(s["folder"]).name: s["reason"] for s in manifest["skipped_series"]}
    assert set(reasons) == {"b_second_series_of_A", "d_broken"} and "second 1mm series of patient 'A'" in reasons[
        "b_second_series_of_A"]
    assert sorted(str(p) for p in tree.rglob("*")) == before  # the input is untouched
    for folder in ("a_ok", "b_second_series_of_A", "c_A_at_3mm"):
        shutil.rmtree(tree / folder)
    result = runner.invoke(app, ["simulate", str(tmp_path / "none"), "--from", str(tree), "--device", "cpu", *FAST])
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "no usable normal-dose series" in lines[0]
    assert not (tmp_path / "none").exists()


def test_nested_trees_and_nifti_files_are_found_and_simulated(tmp_path):
    """--from walks nested folders (a CD or PACS export) for DICOM series and takes NIfTI files too,
    each named by its PatientID or file name; a link back up the tree does not trap the search."""
    from vagan.io.dicom import write_dicom_series
    from vagan.io.readers import write_volume
    from vagan.io.volume import CTVolume

    body = np.full((2, 64, 64), -1000.0, np.float32)
    body[:, 8:-8, 8:-8] = 40.0
    tree = tmp_path / "export"
    write_dicom_series(body, tree / "CD" / "DICOM" / "ST0" / "SE1", series_description="ndct", patient_id="C",
                       pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    write_volume(tree / "nifti" / "P9.nii.gz", CTVolume(body, pixel_spacing_mm=(0.8, 0.8), slice_thickness_mm=2.0))
    (tree / "nifti" / "notes.txt").write_text("not a series")
    (tree / "CD" / "loop").symlink_to(tree, target_is_directory=True)
    before = sorted(str(p) for p in tree.rglob("*"))
    out = tmp_path / "pairs"
    result = runner.invoke(app, ["simulate", str(out), "--from", str(tree), "--device", "cpu", "--dose", "0.25", *FAST])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p["id"] for p in manifest["patients"]) == ["C", "P9"] and not manifest["skipped_series"]
    nifti_pair = load_mayo_pair(out, "P9", "2mm")
    assert nifti_pair.ndct.pixel_spacing_mm == pytest.approx((0.8, 0.8))
    assert np.abs(nifti_pair.ndct.hu - body).max() <= 1.0 and np.std(nifti_pair.ldct.hu - nifti_pair.ndct.hu) > 1.0
    assert sorted(str(p) for p in tree.rglob("*")) == before  # the input is untouched
    one = runner.invoke(app, ["simulate", str(tmp_path / "one"), "--from", str(tree / "nifti" / "P9.nii.gz"),
                              "--device", "cpu", *FAST])
    assert one.exit_code == 0, one.output
