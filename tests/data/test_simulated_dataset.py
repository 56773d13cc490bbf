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
    assert [p["id"] for p in manifest["patients"]] == ["A", "A", "A"]  # all of A's pairs in one patient folder
    assert sorted(p.name for p in (tmp_path / "pairs" / "A").iterdir() if p.is_dir()) == [
        "full_1mm", "full_1mm_series-1001", "full_3mm", "quarter_1mm", "quarter_1mm_series-1001", "quarter_3mm"]
    reasons = {Path(s["folder"]).name: s["reason"] for s in manifest["skipped_series"]}
    assert set(reasons) == {"d_broken"}
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


# ------------------------------------------------- several series of one patient at one thickness

# folder, SeriesNumber, slices, body HU
SERIES_OF_A = (("a_first", 5, 2, 40.0), ("b_second", 9, 3, 100.0), ("c_third", 9, 2, 160.0))


@pytest.fixture(scope="module")
def several_series(tmp_path_factory):
    """Patient A with three 1 mm series (SeriesNumber 5, 9 and 9 again) and patient B with one, each
    with its own body HU, simulated at 25% with noise pools."""
    from vagan.io.dicom import write_dicom_series

    base = tmp_path_factory.mktemp("several")
    sources = {}
    for folder, pid, number, slices, hu in (*(("A/" + f, "A", n, z, h) for f, n, z, h in SERIES_OF_A),
                                           ("B/only", "B", 3, 2, 70.0)):
        volume = np.full((slices, 32, 32), -1000.0, np.float32)
        volume[:, 4:-4, 3:-3] = hu
        write_dicom_series(volume, base / "in" / folder, series_description="ndct", patient_id=pid,
                           series_number=number, pixel_spacing_mm=(2.0, 2.0), slice_thickness_mm=1.0)
        sources[folder] = volume
    out = base / "data"
    result = runner.invoke(app, ["simulate", str(out), "--from", str(base / "in"), "--dose", "0.25", "--device", "cpu",
                                 "--set", "noise_pool=true", "--set", "exposure=config", "--set", "simulation.i0=20000",
                                 *FAST])
    assert result.exit_code == 0, result.output
    return out, base / "in", sources


def test_several_series_of_one_patient_at_one_thickness_are_pairs_in_its_folder(several_series):
    out, source, _ = several_series
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["skipped_series"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["A", "B"]
    # the first keeps the plain folders, the others are named by SeriesNumber, a repeated one made unique
    assert sorted(p.name for p in (out / "A").iterdir()) == [
        "full_1mm", "full_1mm_series-9", "full_1mm_series-9-2", "noise_1mm.npz", "noise_1mm_series-9-2.npz",
        "noise_1mm_series-9.npz", "quarter_1mm", "quarter_1mm_series-9", "quarter_1mm_series-9-2"]
    entries = [(e["id"], Path(e["from"]).relative_to(source).as_posix(), e["label"], e["full"], e["noise_pool"])
               for e in manifest["patients"]]
    assert entries == [("A", "A/a_first", "1mm", "A/full_1mm", "A/noise_1mm.npz"),
                       ("A", "A/b_second", "1mm_series-9", "A/full_1mm_series-9", "A/noise_1mm_series-9.npz"),
                       ("A", "A/c_third", "1mm_series-9-2", "A/full_1mm_series-9-2", "A/noise_1mm_series-9-2.npz"),
                       ("B", "B/only", "1mm", "B/full_1mm", "B/noise_1mm.npz")]
    assert list_mayo_patients(out) == list_mayo_patients(out, "any") == ["A", "B"]
    assert load_mayo_pair(out, "A").ndct.hu.shape == (2, 32, 32)  # the first pair, as before


def test_training_data_holds_the_slices_of_every_series_of_a_patient(several_series):
    from vagan.data.paired import load_slice_pairs
    from vagan.io.mayo import load_mayo_pairs

    out, _, sources = several_series
    assert [p.label for p in load_mayo_pairs(out, "A")] == ["1mm", "1mm_series-9", "1mm_series-9-2"]
    for thickness in ("1mm", "any"):
        pairs = load_slice_pairs(out, ["A", "B"], thickness)
        expected = np.concatenate([sources["A/" + f] for f, *_ in SERIES_OF_A] + [sources["B/only"]])
        assert len(pairs) == 9 and [p.patient for p in pairs] == ["A"] * 7 + ["B"] * 2
        assert [p.index for p in pairs] == [*range(7), 0, 1]  # unique within a patient; the first series' unchanged
        assert np.abs(np.stack([p.ndct for p in pairs]) - expected).max() <= 1.0
        assert all(np.std(p.ldct - p.ndct) > 1.0 for p in pairs)
    assert len(load_slice_pairs(out, ["A"], "1mm", max_slices=4)) == 4


def test_a_split_keeps_all_series_of_a_patient_together(several_series):
    out, _, _ = several_series
    train = load_split(out, {"train": ["A"], "test": ["B"]}, 0, "train")
    assert len(train) == 7 and {p.patient for p in train} == {"A"}
    for seed in range(4):
        subsets = {s: load_split(out, {"train": 0.5, "test": 0.5}, seed, s, "any") for s in ("train", "test")}
        patients = {s: {p.patient for p in pairs} for s, pairs in subsets.items()}
        assert not patients["train"] & patients["test"]
        assert sorted(len(subsets[s]) for s in subsets) == [2, 7]  # all 7 slices of A in one subset


def test_each_series_has_its_own_noise_pool(several_series, tmp_path):
    from vagan.data.noise_pool import mix, pool_path
    from vagan.data.paired import load_slice_pairs
    from vagan.data.patches import PatchPairDataset
    from vagan.errors import InputDataError

    out, _, _ = several_series
    pairs = load_slice_pairs(out, ["A", "B"], "any", with_noise_pool=True)
    assert len(pairs) == 9 and all(p.noise is not None and p.noise.shape == (2, 2, 32, 32) for p in pairs)
    for pair in pairs:  # the stored LDCT is its own series' pool at the dataset dose
        assert np.abs(pair.ldct - (pair.ndct + mix(pair.noise, 0.25))).max() < 0.5
    patches = PatchPairDataset(pairs, patch_size=16, patches_per_slice=2, seed=0, doses=(0.1, 0.5))
    assert len(patches) == 18 and patches[17]["ldct"].shape == (1, 16, 16)
    copy = tmp_path / "data"
    shutil.copytree(out, copy)
    pool_path(copy / "A", "1mm_series-9").unlink()
    with pytest.raises(InputDataError, match="noise_1mm_series-9.npz: no noise pool for patient A"):
        load_slice_pairs(copy, ["A"], "1mm", with_noise_pool=True)
