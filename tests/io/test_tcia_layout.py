"""TCIA's LDCT-and-Projection-data layout (NBIA Data Retriever), read in place: subjects, pairing by
SeriesDescription, skipped subjects, slice pairs, splits and `simulate --from` on a synthetic tree."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from vagan.data.paired import load_slice_pairs, load_split, patient_split
from vagan.errors import InputDataError
from vagan.io.mayo import DataSplit, list_mayo_patients, load_mayo_pair, load_mayo_pairs
from vagan.io.tcia import COLLECTION, dose_kind, is_tcia_root, scan_tcia, tcia_listing

SIZE, SLICES = 32, 4
CSV_COLUMNS = ["Series UID", "Collection", "3rd Party Analysis", "Data Description URI", "Subject ID", "Study UID",
               "Study Description", "Study Date", "Series Description", "Manufacturer", "Modality", "SOP Class Name",
               "SOP Class UID", "Number of Images", "File Size", "File Location", "Download Timestamp"]


@dataclass(frozen=True)
class Series:
    subject: str
    study: str  # the study folder: <MM-DD-YYYY>-NA-NA-<uid5>
    folder: str  # the series folder: <n>.000000-<description>-<uid5>
    description: str  # the DICOM SeriesDescription
    number: int
    thickness: float = 1.0
    manufacturer: str = "SIEMENS"
    windows_path: bool = False  # metadata.csv's File Location with backslashes


# Every irregular case of the brief: series number 2.000000 (L096), the two doses under two study dates
# and a lower-case "Full dose images" (C002), a head case at 3 mm (N005), a GE case with only a full dose (L200).
TREE = [
    Series("L067", "08-21-2018-NA-NA-84498", "1.000000-Full Dose Images-15875", "Full Dose Images", 1),
    Series("L067", "08-21-2018-NA-NA-84498", "1.000000-Low Dose Images-40421", "Low Dose Images", 1),
    Series("L096", "09-12-2018-NA-NA-70211", "2.000000-Full Dose Images-31234", "Full Dose Images", 2),
    Series("L096", "09-12-2018-NA-NA-70211", "1.000000-Low Dose Images-90817", "Low Dose Images", 1),
    Series("C002", "01-15-2019-NA-NA-11111", "1.000000-Full dose images-22222", "Full dose images", 1,
           windows_path=True),
    Series("C002", "01-16-2019-NA-NA-33333", "1.000000-Low Dose Images-44444", "Low Dose Images", 1),
    Series("N005", "03-02-2019-NA-NA-52525", "1.000000-Full Dose Images-55555", "Full Dose Images", 1, 3.0),
    Series("N005", "03-02-2019-NA-NA-52525", "1.000000-Low Dose Images-66666", "Low Dose Images", 1, 3.0),
    Series("L200", "05-05-2019-NA-NA-80808", "1.000000-Full Dose Images-77777", "Full Dose Images", 1,
           manufacturer="GE MEDICAL SYSTEMS"),
]


def _volumes(subject: str) -> tuple[np.ndarray, np.ndarray]:
    """(full, low) HU of a subject: a body with a bright structure, and it plus noise (sd 50 HU)."""
    rng = np.random.default_rng(sum(map(ord, subject)))
    full = np.full((SLICES, SIZE, SIZE), -1000.0, np.float32)
    full[:, 4:-4, 4:-4] = 40.0
    for z in range(SLICES):
        full[z, 10:18, 8 + 2 * z:16 + 2 * z] = 300.0 + 10 * z
    low = np.round(full + rng.normal(0.0, 50.0, full.shape)).astype(np.float32)
    return full, low


def write_tree(manifest: Path, with_csv: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The retriever's download: ``manifest/metadata.csv`` and ``manifest/LDCT-and-Projection-data/...``
    with files ``1-001.dcm`` ...; returns each subject's (full, low) HU as written."""
    from vagan.io.dicom import write_dicom_series

    truth = {s.subject: _volumes(s.subject) for s in TREE}
    studies = {(s.subject, s.study): generate_uid() for s in TREE}
    frames = {s.subject: generate_uid() for s in TREE}
    rows = []
    for s in TREE:
        folder = manifest / COLLECTION / s.subject / s.study / s.folder
        hu = truth[s.subject][0 if dose_kind(s.description) == "full" else 1]
        write_dicom_series(hu, folder, series_description=s.description, patient_id=s.subject,
                           study_instance_uid=studies[(s.subject, s.study)], frame_of_reference_uid=frames[s.subject],
                           pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=s.thickness, series_number=s.number)
        month, day, year = s.study.split("-")[:3]
        for marker in folder.glob(".*"):  # vagan's output marker: the retriever writes none
            marker.unlink()
        for k, path in enumerate(sorted(folder.glob("IM*.dcm")), start=1):
            ds = pydicom.dcmread(path)
            ds.StudyDate, ds.Manufacturer = f"{year}{month}{day}", s.manufacturer
            ds.save_as(folder / f"1-{k:03d}.dcm")
            path.unlink()
        location = f"./{COLLECTION}/{s.subject}/{s.study}/{s.folder}"
        rows.append({"Series UID": str(ds.SeriesInstanceUID), "Collection": COLLECTION, "3rd Party Analysis": "NO",
                     "Data Description URI": "https://doi.org/10.7937/9npb-2637", "Subject ID": s.subject,
                     "Study UID": str(ds.StudyInstanceUID), "Study Description": "",
                     "Study Date": f"{month}-{day}-{year}", "Series Description": s.description,
                     "Manufacturer": s.manufacturer, "Modality": "CT", "SOP Class Name": "CT Image Storage",
                     "SOP Class UID": "1.2.840.10008.5.1.4.1.1.2", "Number of Images": str(SLICES),
                     "File Size": "10.00 KB", "Download Timestamp": "2024-01-01T00:00:00.000",
                     "File Location": location.replace("/", "\\") if s.windows_path else location})
    if with_csv:
        with (manifest / "metadata.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return truth


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tcia") / "manifest-1700000000000"
    return root, write_tree(root)


@pytest.fixture
def own_tree(tmp_path: Path, tree) -> tuple[Path, dict]:
    """A copy of the tree that a test may change."""
    root, truth = tree
    copy = tmp_path / root.name
    shutil.copytree(root, copy)
    return copy, truth


def _series(root: Path, subject: str, folder_part: str) -> Path:
    (path,) = [p for p in (root / COLLECTION / subject).glob(f"*/*{folder_part}*")]
    return path


def test_the_tree_is_in_the_retrievers_layout(tree) -> None:
    root, _ = tree
    assert (root / "metadata.csv").is_file()
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.dcm"))
    assert files[0] == f"{COLLECTION}/C002/01-15-2019-NA-NA-11111/1.000000-Full dose images-22222/1-001.dcm"
    assert len(files) == len(TREE) * SLICES


def test_dose_kind_reads_descriptions_case_insensitively() -> None:
    assert dose_kind("Full Dose Images") == dose_kind("Full dose images") == dose_kind("FULL  DOSE IMAGES") == "full"
    assert dose_kind("Low Dose Images") == dose_kind("quarter_dose") == "low"
    assert dose_kind("Projections") is None and dose_kind("") is None and dose_kind(None) is None
    assert dose_kind("full dose vs low dose") is None


def test_detects_the_layout_from_the_download_and_the_collection_folder(tree, tmp_path) -> None:
    from support import write_tiny_dataset

    root, _ = tree
    assert is_tcia_root(root) and is_tcia_root(root / COLLECTION)
    assert not is_tcia_root(write_tiny_dataset(tmp_path / "mayo", patients=1))
    assert not is_tcia_root(tmp_path / "nowhere")
    (tmp_path / "download" / "other").mkdir(parents=True)  # a metadata.csv beside it names none of its folders
    shutil.copy(root / "metadata.csv", tmp_path / "download" / "metadata.csv")
    assert is_tcia_root(tmp_path / "download") and not is_tcia_root(tmp_path / "download" / "other")


def test_subjects_found_per_thickness_and_the_ge_case_skipped_with_its_reason(tree, caplog) -> None:
    root, _ = tree
    with caplog.at_level(logging.WARNING, logger="vagan.io.tcia"):
        assert list_mayo_patients(root) == ["C002", "L067", "L096"]  # the default thickness, 1mm
    (warning,) = [r.getMessage() for r in caplog.records if "L200" in r.getMessage()]
    assert "skipped" in warning and "full dose only" in warning and "GE MEDICAL SYSTEMS" in warning
    assert list_mayo_patients(root, "3mm") == ["N005"]
    assert list_mayo_patients(root, "any") == ["C002", "L067", "L096", "N005"]
    assert list_mayo_patients(root / COLLECTION, "1mm") == ["C002", "L067", "L096"]  # the csv beside it is used too
    listing = tcia_listing(root)
    assert listing["layout"] == "tcia-ldct-and-projection-data"
    assert [p["id"] for p in listing["patients"]] == ["C002", "L067", "L096", "N005"]
    (skipped,) = listing["skipped"]
    assert skipped["subject"] == "L200" and "no low-dose series" in skipped["reason"]
    json.dumps(listing)  # plain data


def test_pairs_matched_by_series_description_in_the_irregular_cases(tree) -> None:
    root, _ = tree
    index = scan_tcia(root)
    assert index.metadata_csv == root / "metadata.csv"
    for name, subject in index.subjects.items():
        for pair in subject.pairs:
            assert pair.full.description.lower() == "full dose images" and pair.low.description == "Low Dose Images"
            assert pair.full.patient_id == pair.low.patient_id == name
    (l096,) = index.subjects["L096"].pairs
    assert (l096.full.series_number, l096.low.series_number) == ("2", "1")  # series number 2.000000
    (c002,) = index.subjects["C002"].pairs
    assert c002.full.folder.parent.name != c002.low.folder.parent.name  # two study dates
    assert (c002.full.study_date, c002.low.study_date) == ("20190115", "20190116")
    assert c002.full.folder.name == "1.000000-Full dose images-22222"  # the backslashed File Location was found
    assert (l096.label, c002.label, index.subjects["N005"].pairs[0].label) == ("1mm", "1mm", "3mm")
    # the dose: the collection's documented fraction for the body part (L abdomen, C chest, N head)
    assert {name: [p.dose for p in s.pairs] for name, s in index.subjects.items()} == {
        "C002": [0.10], "L067": [0.25], "L096": [0.25], "N005": [0.25], "L200": []}


def test_load_slice_pairs_gives_aligned_ldct_and_ndct_slices(tree) -> None:
    root, truth = tree
    pairs = load_slice_pairs(root, ["C002", "L096"], "1mm")
    assert [(p.patient, p.index) for p in pairs] == [(s, z) for s in ("C002", "L096") for z in range(SLICES)]
    for pair in pairs:
        full, low = truth[pair.patient]
        assert pair.ldct.shape == pair.ndct.shape == (SIZE, SIZE) and pair.pixel_mm == pytest.approx(0.7)
        np.testing.assert_allclose(pair.ndct, full[pair.index], atol=1.0)
        np.testing.assert_allclose(pair.ldct, low[pair.index], atol=1.0)
    paired = load_mayo_pair(root, "N005", "3mm")
    assert paired.dose == 0.25 and paired.label == "3mm" and paired.ndct.slice_thickness_mm == 3.0
    assert 40 < float((paired.ldct.hu - paired.ndct.hu).std()) < 60


def test_folder_names_that_lie_do_not_pair_the_wrong_way(own_tree, caplog) -> None:
    """Swap the names of L067's two series folders (metadata.csv then disagrees with them too): the
    DICOM SeriesDescription still decides which is the low dose."""
    root, truth = own_tree
    full, low = _series(root, "L067", "Full Dose"), _series(root, "L067", "Low Dose")
    full.rename(full.parent / "swap")
    low.rename(full)
    (full.parent / "swap").rename(low)
    with caplog.at_level(logging.WARNING, logger="vagan.io.tcia"):
        (pair,) = list(load_mayo_pairs(root, "L067", "1mm"))
    assert pair.ldct.source == full and pair.ndct.source == low  # the folders named the other way
    np.testing.assert_allclose(pair.ndct.hu, truth["L067"][0], atol=1.0)
    np.testing.assert_allclose(pair.ldct.hu, truth["L067"][1], atol=1.0)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "the folder name says full dose" in messages and "going by the DICOM header" in messages
    assert "metadata.csv says 'Full Dose Images'" in messages


def test_without_metadata_csv_the_headers_alone_do_it(own_tree) -> None:
    root, _ = own_tree
    (root / "metadata.csv").unlink()
    assert is_tcia_root(root)
    assert list_mayo_patients(root, "any") == ["C002", "L067", "L096", "N005"]
    assert scan_tcia(root).subjects["C002"].pairs[0].dose == 0.10  # the collection folder names the collection


def test_a_series_missing_from_the_download_is_named(own_tree, caplog) -> None:
    root, _ = own_tree
    shutil.rmtree(_series(root, "L067", "Low Dose"))
    with caplog.at_level(logging.WARNING, logger="vagan.io.tcia"):
        assert list_mayo_patients(root) == ["C002", "L096"]
    assert any("L067 skipped" in r.getMessage() and "not on disk" in r.getMessage() for r in caplog.records)
    with pytest.raises(InputDataError, match="subject L067 has .*full dose only"):
        load_mayo_pair(root, "L067")


def _copy_series(source: Path, number: int = 3, **tags) -> Path:
    """A copy of a series beside it, as series ``number`` with ``tags`` changed in every file."""
    copy = source.parent / f"{number}.000000-{source.name.split('-', 1)[1]}"
    shutil.copytree(source, copy)
    for path in copy.iterdir():
        ds = pydicom.dcmread(path)
        ds.SeriesNumber = number
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(path)
    return copy


def test_several_pairs_at_one_thickness_pair_by_frame_of_reference(own_tree) -> None:
    root, truth = own_tree
    frame = generate_uid()  # L067 scanned again: a second full/low pair in another frame of reference
    for part in ("Full Dose", "Low Dose"):
        _copy_series(_series(root, "L067", part), FrameOfReferenceUID=frame, SeriesInstanceUID=generate_uid())
    pairs = scan_tcia(root).subjects["L067"].pairs
    assert [p.label for p in pairs] == ["1mm", "1mm_series-3"]
    assert [(p.full.frame_uid == p.low.frame_uid, p.full.series_number) for p in pairs] == [(True, "1"), (True, "3")]
    slices = load_slice_pairs(root, ["L067"], "1mm")
    assert [p.index for p in slices] == list(range(2 * SLICES))
    np.testing.assert_allclose(slices[SLICES].ldct, truth["L067"][1][0], atol=1.0)
    # a further low dose in the first frame of reference: which one pairs with its full dose is unknown
    _copy_series(_series(root, "L067", "1.000000-Low Dose"), 4, SeriesInstanceUID=generate_uid())
    subject = scan_tcia(root).subjects["L067"]
    assert [(p.label, p.full.series_number) for p in subject.pairs] == [("1mm", "3")]
    reasons = {Path(folder).name: why for folder, why in subject.unpaired}
    assert sorted(reasons) == ["1.000000-Full Dose Images-15875", "1.000000-Low Dose Images-40421",
                               "4.000000-Low Dose Images-40421"]
    assert all("cannot tell which pairs with it" in why for why in reasons.values())


def test_patient_split_and_its_errors(tree) -> None:
    root, _ = tree
    subsets = patient_split(root, DataSplit(train=("L067", "L096"), val=(), test=("C002",)), 0, "1mm")
    assert subsets == {"train": ["L067", "L096"], "val": [], "test": ["C002"]}
    drawn = patient_split(root, DataSplit(train=0.34, val=0.33, test=0.33), 7, "1mm")
    assert sorted(p for names in drawn.values() for p in names) == ["C002", "L067", "L096"]
    assert all(len(names) == 1 for names in drawn.values())
    assert len(load_split(root, DataSplit(train=0.34, val=0.33, test=0.33), 7, "test", "1mm")) == SLICES
    with pytest.raises(InputDataError, match=r"no subject with a full- and a low-dose series at 2mm.*"
                                             r"1mm \(3 subjects\), 3mm \(1 subject\).*L200"):
        patient_split(root, DataSplit(), 0, "2mm")
    with pytest.raises(InputDataError, match="noise pools"):
        load_split(root, DataSplit(train=("L067",), val=(), test=()), 0, "train", "1mm", with_noise_pool=True)


def test_any_thickness_with_pairs_at_two_is_an_error(own_tree) -> None:
    root, _ = own_tree
    for part in ("Full Dose", "Low Dose"):  # give N005 a second pair, at 1 mm
        _copy_series(_series(root, "N005", part), SliceThickness=1.0)
    assert "N005" in list_mayo_patients(root, "1mm") and "N005" in list_mayo_patients(root, "3mm")
    with pytest.raises(InputDataError, match="N005.*pairs at 1mm, 3mm"):
        list_mayo_patients(root, "any")


def test_training_reads_the_tree_as_its_data_root(tree) -> None:
    from support import tiny_config

    from vagan.training.trainer import load_data

    root, _ = tree
    cfg = tiny_config("g_psnr", f"data.root={root}", "data.split={train: [L067, L096], val: [C002], test: []}",
                      "data.patches_per_slice=1", "data.val_slices=2")
    data = load_data(cfg)
    assert len(data.train) == 2 * SLICES and len(data.val) == 2


def test_evaluation_reads_the_tree(tree) -> None:
    from vagan.evaluation.eval_config import EvaluationConfig
    from vagan.evaluation.inputs import load_test_set

    root, _ = tree
    data = load_test_set(EvaluationConfig.from_dict({"methods": ["ldct"], "data_root": str(root), "subset": "all"}))
    assert data.patients == ("C002", "L067", "L096") and len(data.pairs) == 3 * SLICES
    test = load_test_set(EvaluationConfig.from_dict({"methods": ["ldct"], "data_root": str(root), "thickness": "any",
                                                     "split": {"train": ["L067"], "test": ["N005"]}}))
    assert test.patients == ("N005",) and len(test.pairs) == SLICES


def test_simulate_from_takes_the_full_dose_series_and_skips_the_low_dose_ones(tree, tmp_path) -> None:
    from vagan.data.simulated import write_dataset_from_series
    from vagan.physics.simulate import SimulationConfig

    root, truth = tree
    out = write_dataset_from_series(root, tmp_path / "sim", 0.25, SimulationConfig(n_views=90, n_detectors=64),
                                    exposure="config", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p["id"] for p in manifest["patients"]) == ["C002", "L067", "L096", "L200", "N005"]  # GE too
    assert all(dose_kind(Path(p["from"]).name) == "full" for p in manifest["patients"])
    skipped = {Path(s["folder"]).name: s["reason"] for s in manifest["skipped_series"]}
    assert sorted(skipped) == sorted(s.folder for s in TREE if s.description == "Low Dose Images")
    assert all("a low-dose series (SeriesDescription 'Low Dose Images')" in why for why in skipped.values())
    assert list_mayo_patients(out, "any") == ["C002", "L067", "L096", "L200", "N005"]  # the Mayo layout
    pair = load_mayo_pair(out, "L200", "1mm")
    np.testing.assert_allclose(pair.ndct.hu, truth["L200"][0], atol=1.0)
