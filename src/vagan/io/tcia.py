"""TCIA's LDCT-and-Projection-data collection (Moen et al. 2021) as the NBIA Data Retriever writes it,
read in place as a paired dataset.

::

    root/metadata.csv                                   the retriever's listing (optional)
    root/LDCT-and-Projection-data/<Subject>/<MM-DD-YYYY>-NA-NA-<uid5>/<n>.000000-Full Dose Images-<uid5>/1-001.dcm ...
    root/LDCT-and-Projection-data/<Subject>/<MM-DD-YYYY>-NA-NA-<uid5>/<n>.000000-Low Dose Images-<uid5>/1-001.dcm ...

``root`` may be the folder that holds ``metadata.csv`` and the collection folder, or the collection
folder itself (the subjects right below it; a ``metadata.csv`` beside it is then used too). Subjects
(``L...`` abdomen, ``C...`` chest, ``N...`` head) are the patients; a series is a folder that holds
DICOM files two levels below its subject (``<study>/<series>``), whatever the study and series folders
are called: the series number may be ``2.000000``, the two doses may lie under different study dates,
and the description in the folder name may be written ``Full dose images``.

Which dose a series is comes from its DICOM SeriesDescription, case-insensitive (:func:`dose_kind`:
"full dose" -> NDCT, "low dose"/"quarter dose"/"reduced dose" -> LDCT), never from the folder name:
where the folder name or ``metadata.csv``'s "Series Description" says otherwise, the header wins and
a warning says so; a header without a SeriesDescription takes ``metadata.csv``'s (with a warning), and
a series neither names is not used. Each subject's full- and low-dose series are paired per slice
thickness (the header's SliceThickness, labelled like ``1mm`` so that ``data.thickness`` selects it as
for the Mayo layout); several of each at one thickness are paired by FrameOfReferenceUID. The slices
of a pair are then matched by position, as for the Mayo layout (:func:`vagan.io.mayo.pair_volumes`).

A subject without a pair (the collection's GE cases have a full dose only) is skipped with its reason:
a log warning, and an entry under ``skipped`` in :func:`tcia_listing`. The LDCT's dose, as a fraction
of the full dose, is read from its description where it says one (``25%``, ``quarter``), else is the
collection's documented dose for the subject's body part when the data are that collection (its folder
or ``metadata.csv``'s "Collection" says so): 25% for abdomen (L) and head (N), 10% for chest (C);
else it is left unknown.

:func:`vagan.io.mayo.list_mayo_patients` and :func:`~vagan.io.mayo.load_mayo_pairs` hand such a root to
this module (:func:`is_tcia_root`), so it works wherever a Mayo root does: ``data.root`` of training,
``vagan evaluate --data`` and the study. Nothing is copied.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vagan.errors import MACHINE_FAULTS, InputDataError
from vagan.io.mayo import ANY_THICKNESS, Z_TOLERANCE_MM, PairedVolume, pair_volumes, series_label

log = logging.getLogger(__name__)

COLLECTION = "LDCT-and-Projection-data"
METADATA_CSV = "metadata.csv"
LAYOUT = "tcia-ldct-and-projection-data"
# Moen et al. 2021 (Med. Phys. 48:902): the low dose is 25% of the routine dose for abdomen and head,
# 10% for chest; subject IDs start with the body part's letter.
COLLECTION_LOW_DOSE = {"L": 0.25, "N": 0.25, "C": 0.10}
BODY_PART = {"L": "abdomen", "N": "head", "C": "chest"}

DoseKind = Literal["full", "low"]
_FULL = re.compile(r"(?<![a-z])(full|normal|routine)[ _-]*dose(?![a-z])")
_LOW = re.compile(r"(?<![a-z])(low|quarter|reduced)[ _-]*dose(?![a-z])")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_MM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*mm\s*$", re.IGNORECASE)
_SERIES_DEPTHS = (3, 4)  # root/<subject>/<study>/<series>, root/<collection>/<subject>/<study>/<series>
_DETECT_HEADERS = 20  # series headers read at most to tell whether a root without metadata.csv is TCIA's
_warned: set[tuple[str, ...]] = set()


def _warn_once(key: tuple[str, ...], message: str, *args: object) -> None:
    """Warn once per process: the listing runs several times per command (split, train, validation)."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def dose_kind(description: str | None) -> DoseKind | None:
    """``"full"`` or ``"low"`` from a SeriesDescription (case and spacing ignored: ``Full Dose Images``,
    ``Full dose images``, ``LOW DOSE IMAGES``, ``quarter dose``), ``None`` where it names neither or both."""
    text = " ".join((description or "").lower().split())
    full, low = bool(_FULL.search(text)), bool(_LOW.search(text))
    return "full" if full and not low else "low" if low and not full else None


def thickness_label(mm: float) -> str:
    """``1.0`` -> ``"1mm"``, ``1.5`` -> ``"1.5mm"`` (as ``vagan simulate --from`` labels its folders)."""
    return f"{mm:g}mm"


def _at_thickness(mm: float, thickness: str) -> bool:
    match = _MM.match(thickness)
    if match is None:
        return thickness_label(mm) == thickness
    return abs(float(match.group(1)) - mm) < 1e-3


# ------------------------------------------------------------------------------------ metadata.csv


@dataclass(frozen=True)
class CsvRow:
    """One row of the retriever's ``metadata.csv``: a series folder and what the archive says of it."""

    folder: Path
    description: str
    subject: str
    collection: str
    images: int | None


def _norm(path: Path) -> Path:
    return Path(path).resolve()


def read_metadata_csv(path: Path) -> dict[Path, CsvRow]:
    """The rows of a retriever ``metadata.csv``, keyed by their series folder (its "File Location",
    relative to the file, ``/`` or ``\\`` separated); empty, with a warning, for a file without that column."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = {name.strip().lower(): name for name in reader.fieldnames or []}
            if "file location" not in fields:
                _warn_once(("csv", str(path)), "%s: no 'File Location' column; not the NBIA Data Retriever's "
                           "metadata.csv, ignored", path)
                return {}
            rows: dict[Path, CsvRow] = {}
            for raw in reader:
                def get(key: str) -> str:
                    name = fields.get(key)
                    return (raw.get(name) or "").strip() if name is not None else ""

                location = get("file location").replace("\\", "/")
                if not location:
                    continue
                while location.startswith("./"):
                    location = location[2:]
                images = get("number of images")
                folder = _norm(path.parent / location)
                rows[folder] = CsvRow(folder, get("series description"), get("subject id"), get("collection"),
                                      int(images) if images.isdigit() else None)
    except MACHINE_FAULTS:
        raise
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputDataError(f"{path}: cannot read the retriever's metadata.csv ({err})") from None
    return rows


def _has_file_location(path: Path) -> bool:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return "file location" in {name.strip().lower() for name in header}


def find_metadata_csv(root: Path) -> Path | None:
    """The retriever's ``metadata.csv`` for ``root``: in it, else beside it when its File Locations lie
    under ``root`` (``root`` is then the collection folder); ``None`` when there is none."""
    root = Path(root)
    if (root / METADATA_CSV).is_file() and _has_file_location(root / METADATA_CSV):
        return root / METADATA_CSV
    beside = root.parent / METADATA_CSV
    if root.parent != root and beside.is_file() and _has_file_location(beside):
        inside = _norm(root)
        if any(inside in folder.parents for folder in read_metadata_csv(beside)):
            return beside
    return None


# ------------------------------------------------------------------------------------------ series


@dataclass(frozen=True)
class TciaSeries:
    """One series folder of a subject, as its first DICOM header describes it."""

    folder: Path
    description: str  # the DICOM SeriesDescription (metadata.csv's where the header has none)
    dose: DoseKind | None
    thickness_mm: float | None
    series_number: str
    series_uid: str
    frame_uid: str
    patient_id: str
    study_date: str
    manufacturer: str
    images: int  # DICOM files in the folder
    listed_images: int | None = None  # metadata.csv's "Number of Images"
    collection: bool = False  # the data say they are LDCT-and-Projection-data

    @property
    def thickness(self) -> str | None:
        return None if self.thickness_mm is None else thickness_label(self.thickness_mm)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "description": self.description, "series_number": self.series_number,
                "study_date": self.study_date, "manufacturer": self.manufacturer, "thickness": self.thickness,
                "images": self.images, "series_uid": self.series_uid}


def _dicom_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that may be DICOM: a DICOM suffix (``1-001.dcm``) is taken as it is, other
    files are sniffed (:func:`~vagan.io.dicom.looks_like_dicom`), so a listing opens no ``.dcm`` file."""
    from vagan.io.dicom import DICOM_SUFFIXES, looks_like_dicom

    try:
        with os.scandir(folder) as entries:
            files = sorted(Path(e.path) for e in entries if not e.name.startswith(".") and e.is_file())
    except OSError:
        return []
    return [p for p in files if p.suffix.lower() in DICOM_SUFFIXES or looks_like_dicom(p)]


_KEYS = ("SeriesDescription", "SliceThickness", "SeriesNumber", "SeriesInstanceUID", "FrameOfReferenceUID",
         "PatientID", "StudyDate", "Manufacturer")


def _header(path: Path) -> dict[str, str]:
    """The tags of one file that describe its series, as stripped text (``""`` where absent); the
    pixels are not read, and pydicom's warnings on odd values are left to the series reader, which
    reads the file again."""
    import pydicom

    with warnings.catch_warnings():  # pydicom converts values lazily: read them all in here
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return {key: "" if ds.get(key) is None else str(ds.get(key)).strip() for key in _KEYS}


def series_description(folder: Path) -> str | None:
    """The SeriesDescription of the first DICOM file in ``folder``; ``None`` for no DICOM file or an
    unreadable one (the series reader then says why)."""
    files = _dicom_files(Path(folder))
    if not files:
        return None
    try:
        return _header(files[0])["SeriesDescription"]
    except MACHINE_FAULTS:
        raise
    except Exception:  # pydicom raises many types on damaged input
        return None


def _read_series(folder: Path, files: list[Path], row: CsvRow | None) -> TciaSeries:
    """Describe a series from its first header, checked against its folder name and ``row``."""
    try:
        tags = _header(files[0])
    except MACHINE_FAULTS:
        raise
    except Exception as err:
        raise InputDataError(f"{files[0]}: unreadable DICOM header ({type(err).__name__}: {err})") from None
    description = tags["SeriesDescription"]
    if not description and row is not None and row.description:
        _warn_once(("nodesc", str(folder)), "%s: no SeriesDescription in its DICOM header; taking metadata.csv's "
                   "%r", folder, row.description)
        description = row.description
    elif row is not None and row.description and " ".join(row.description.lower().split()) != \
            " ".join(description.lower().split()):
        _warn_once(("csvdesc", str(folder)), "%s: metadata.csv says %r but its DICOM SeriesDescription is %r; "
                   "going by the DICOM header", folder, row.description, description)
    kind = dose_kind(description)
    named = dose_kind(folder.name)
    if kind is not None and named is not None and named != kind:
        _warn_once(("name", str(folder)), "%s: the folder name says %s dose but its SeriesDescription %r says %s "
                   "dose; going by the DICOM header", folder, named, description, kind)
    try:
        mm = float(tags["SliceThickness"]) if tags["SliceThickness"] else None
    except ValueError:
        mm = None
    in_collection = any(part.lower() == COLLECTION.lower() for part in folder.parts) or (
        row is not None and row.collection.lower() == COLLECTION.lower())
    return TciaSeries(folder, description, kind, mm, tags["SeriesNumber"], tags["SeriesInstanceUID"],
                      tags["FrameOfReferenceUID"], tags["PatientID"], tags["StudyDate"], tags["Manufacturer"],
                      len(files), row.images if row is not None else None, in_collection)


# ---------------------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class TciaPair:
    """A full- and a low-dose series of one subject at one thickness; ``label`` as the Mayo layout's
    (``1mm``, ``1mm_series-<n>`` for a further pair at it); ``dose`` the LDCT's fraction of the full
    dose, or ``None`` where unknown."""

    subject: str
    label: str
    full: TciaSeries
    low: TciaSeries
    dose: float | None

    @property
    def thickness(self) -> str:
        return self.full.thickness or ""

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "thickness": self.thickness, "dose": self.dose, "full": self.full.to_dict(),
                "low": self.low.to_dict()}


@dataclass(frozen=True)
class TciaSubject:
    """One subject: its pairs (every thickness) and, with a reason, the series not in a pair."""

    name: str
    folder: Path
    pairs: tuple[TciaPair, ...]
    unpaired: tuple[tuple[str, str], ...] = ()  # (series folder, why it is in no pair)

    def thicknesses(self) -> list[str]:
        return sorted({p.thickness for p in self.pairs})

    def at(self, thickness: str) -> list[TciaPair]:
        """The pairs at ``thickness`` (``"1mm"``), or for :data:`~vagan.io.mayo.ANY_THICKNESS` those at
        the subject's one thickness; pairs at several are then an :class:`InputDataError`."""
        if thickness == ANY_THICKNESS:
            found = self.thicknesses()
            if len(found) > 1:
                raise InputDataError(f"{self.folder}: full/low-dose pairs at {', '.join(found)}; give the thickness "
                                     f"to use instead of {ANY_THICKNESS!r}")
            return list(self.pairs)
        return [p for p in self.pairs if p.full.thickness_mm is not None and _at_thickness(p.full.thickness_mm,
                                                                                           thickness)]

    def why_skipped(self, thickness: str) -> str:
        """Why the subject gives no pair at ``thickness``."""
        if self.pairs:
            return f"no full/low-dose pair at {thickness} (pairs at {', '.join(self.thicknesses())})"
        if not self.unpaired:
            return "no full- or low-dose series"
        return "; ".join(f"{Path(folder).name}: {why}" for folder, why in self.unpaired)

    def to_dict(self, thickness: str = ANY_THICKNESS) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.name, "folder": str(self.folder),
                               "pairs": [p.to_dict() for p in self.at(thickness)]}
        if self.unpaired:
            out["unpaired_series"] = [{"folder": f, "reason": why} for f, why in self.unpaired]
        return out


def _low_dose_fraction(subject: str, low: TciaSeries) -> float | None:
    percent = _PERCENT.search(low.description)
    if percent is not None and 0.0 < float(percent.group(1)) <= 100.0:
        return float(percent.group(1)) / 100.0
    if "quarter" in low.description.lower():
        return 0.25
    if low.collection and subject[:1].upper() in COLLECTION_LOW_DOSE:
        return COLLECTION_LOW_DOSE[subject[:1].upper()]
    return None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


def _describe(series: TciaSeries) -> str:
    maker = f", Manufacturer {series.manufacturer}" if series.manufacturer else ""
    return f"SeriesDescription {series.description!r}{maker}"


def _pair_subject(name: str, folder: Path, series: list[TciaSeries], unpaired: list[tuple[str, str]]) -> TciaSubject:
    """Pair a subject's full- and low-dose series per thickness; the rest go to ``unpaired``."""
    doses = {s.dose for s in series}
    groups: dict[float, dict[str, list[TciaSeries]]] = {}
    for s in series:
        if s.dose is None:
            unpaired.append((str(s.folder), f"its SeriesDescription {s.description!r} names neither full nor low "
                                            "dose"))
        elif s.thickness_mm is None:
            unpaired.append((str(s.folder), f"{s.dose}-dose series without SliceThickness"))
        else:
            key = round(s.thickness_mm, 3)
            groups.setdefault(key, {"full": [], "low": []})[s.dose].append(s)
    pairs: list[TciaPair] = []
    for mm in sorted(groups):
        fulls, lows = groups[mm]["full"], groups[mm]["low"]
        label = thickness_label(mm)
        if not lows or not fulls:
            have, other = ("full", "low") if fulls else ("low", "full")
            at_all = "" if other in doses else f" (the subject has no {other}-dose series at all)"
            for s in fulls or lows:
                unpaired.append((str(s.folder), f"{have} dose only: {_describe(s)}, {label}, and no {other}-dose "
                                                 f"series at {label}{at_all}"))
            continue
        matched: list[tuple[TciaSeries, TciaSeries]] = []
        if len(fulls) == 1 and len(lows) == 1:
            matched = [(fulls[0], lows[0])]
        else:  # several at one thickness: pair those of one frame of reference, one to one
            for full in fulls:
                same = [low for low in lows if full.frame_uid and low.frame_uid == full.frame_uid]
                if len(same) == 1 and sum(f.frame_uid == full.frame_uid for f in fulls) == 1:
                    matched.append((full, same[0]))
            taken = {id(s) for pair in matched for s in pair}
            for s in fulls + lows:
                if id(s) in taken:
                    continue
                other = "low" if s.dose == "full" else "full"
                same = [o for o in (lows if s.dose == "full" else fulls) if s.frame_uid and o.frame_uid == s.frame_uid]
                where = f"{len(fulls)} full- and {len(lows)} low-dose series at {label}"
                unpaired.append((str(s.folder), f"{where}, and no {other}-dose series in its frame of reference"
                                 if not same else f"{where}, several of them in its frame of reference "
                                 "(FrameOfReferenceUID): cannot tell which pairs with it"))
        matched.sort(key=lambda pair: (_number(pair[0].series_number), str(pair[0].folder)))
        names: set[str] = set()
        for k, (full, low) in enumerate(matched):
            if k == 0:
                pair_label = label
            else:
                base = re.sub(r"[^A-Za-z0-9._-]+", "_", full.series_number or full.folder.name).strip("._") or "series"
                pair_label, copy = series_label(label, base), 1
                while pair_label in names:
                    copy += 1
                    pair_label = series_label(label, f"{base}-{copy}")
            names.add(pair_label)
            pairs.append(TciaPair(name, pair_label, full, low, _low_dose_fraction(name, low)))
    return TciaSubject(name, folder, tuple(pairs), tuple(unpaired))


def _series_of(subject_folder: Path) -> Iterator[tuple[Path, list[Path]]]:
    """``<study>/<series>`` folders of a subject that hold DICOM files, with those files."""
    for study in sorted(p for p in subject_folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for series in sorted(p for p in study.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = _dicom_files(series)
            if files:
                yield series, files


def _scan_subject(folder: Path, rows: dict[Path, CsvRow]) -> TciaSubject:
    series: list[TciaSeries] = []
    unpaired: list[tuple[str, str]] = []
    on_disk: set[Path] = set()
    for path, files in _series_of(folder):
        key = _norm(path)
        on_disk.add(key)
        row = rows.get(key)
        try:
            info = _read_series(path, files, row)
        except InputDataError as err:
            unpaired.append((str(path), str(err)))
            continue
        if row is not None and row.images is not None and row.images != info.images:
            _warn_once(("count", str(path)), "%s: %d DICOM file(s) but metadata.csv lists %d images (an incomplete "
                       "download?)", path, info.images, row.images)
        series.append(info)
    base = _norm(folder)
    for key, row in rows.items():
        if key not in on_disk and base in key.parents:
            unpaired.append((str(key), f"listed in metadata.csv ({row.description!r}) but not on disk, or without "
                                       "DICOM files (an incomplete download?)"))
    return _pair_subject(folder.name, folder, series, unpaired)


def _candidate_subjects(root: Path) -> list[Path]:
    """Folders one or two levels below ``root`` holding ``<study>/<series>/`` DICOM files: the subjects."""
    found: list[Path] = []
    level = [root]
    for depth in range(1, max(_SERIES_DEPTHS) - 1):
        children = []
        for folder in level:
            try:
                children += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
        for child in children:
            if depth + 2 in _SERIES_DEPTHS and next(_series_of(child), None) is not None:
                found.append(child)
        level = [c for c in children if c not in found]
    return found


def _subject_folders(root: Path) -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for folder in _candidate_subjects(root):
        if folder.name in folders:
            raise InputDataError(f"{root}: two subject folders named {folder.name!r} ({folders[folder.name]} and "
                                 f"{folder}); give the collection folder as the root")
        folders[folder.name] = folder
    return folders


@dataclass
class TciaIndex:
    """Every subject of a TCIA root, paired (:func:`scan_tcia`)."""

    root: Path
    metadata_csv: Path | None
    subjects: dict[str, TciaSubject] = field(default_factory=dict)

    def patients(self, thickness: str) -> list[str]:
        """Sorted subjects with a pair at ``thickness``."""
        return sorted(name for name, subject in self.subjects.items() if subject.at(thickness))

    def skipped(self, thickness: str) -> list[tuple[str, str]]:
        """Subjects with no pair at ``thickness``, each with the reason."""
        return [(name, subject.why_skipped(thickness)) for name, subject in sorted(self.subjects.items())
                if not subject.at(thickness)]

    def to_dict(self, thickness: str = ANY_THICKNESS) -> dict[str, Any]:
        """Manifest-like listing: the layout, the patients and their pairs, and the skipped subjects."""
        listed = self.patients(thickness)
        return {"kind": "vagan-dataset-listing", "layout": LAYOUT, "root": str(self.root),
                "metadata_csv": None if self.metadata_csv is None else str(self.metadata_csv),
                "thickness": thickness, "patients": [self.subjects[name].to_dict(thickness) for name in listed],
                "skipped": [{"subject": name, "reason": why} for name, why in self.skipped(thickness)]}


def _rows(root: Path) -> tuple[Path | None, dict[Path, CsvRow]]:
    path = find_metadata_csv(root)
    return path, ({} if path is None else read_metadata_csv(path))


def scan_tcia(root: Path) -> TciaIndex:
    """Find and pair every subject under ``root`` (one DICOM header read per series)."""
    root = Path(root)
    path, rows = _rows(root)
    index = TciaIndex(root, path)
    for name, folder in _subject_folders(root).items():
        index.subjects[name] = _scan_subject(folder, rows)
    return index


def scan_tcia_subject(root: Path, patient: str) -> TciaSubject:
    """One subject of ``root`` (``root/<patient>`` or ``root/<collection>/<patient>``), paired."""
    root = Path(root)
    candidates = [root / patient] + sorted(p / patient for p in root.iterdir() if p.is_dir()
                                           and not p.name.startswith(".") and p.name != patient)
    folders = [c for c in candidates if c.is_dir() and next(_series_of(c), None) is not None]
    if not folders:
        raise InputDataError(f"{root}: no subject {patient!r} (a folder {patient}/<study>/<series>/ holding DICOM "
                             "files, right below the root or below its collection folder)")
    if len(folders) > 1:
        raise InputDataError(f"{root}: subject {patient!r} is in several folders ({', '.join(map(str, folders))}); "
                             "give the collection folder as the root")
    return _scan_subject(folders[0], _rows(root)[1])


def tcia_listing(root: Path, thickness: str = ANY_THICKNESS) -> dict[str, Any]:
    """The manifest-like listing of a TCIA root at ``thickness`` (:meth:`TciaIndex.to_dict`)."""
    return scan_tcia(root).to_dict(thickness)


# ------------------------------------------------------------------------------- the Mayo entry points


def _has_mayo_patients(root: Path) -> bool:
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith("."):
            try:
                if any(p.is_dir() and p.name.startswith(("full_", "quarter_")) for p in child.iterdir()):
                    return True
            except OSError:
                continue
    return False


def is_tcia_root(root: Path) -> bool:
    """Whether ``root`` is in the retriever's layout: not a Mayo root (no ``<patient>/full_*`` or
    ``quarter_*`` folders, which win), and either holds (or sits beside) a ``metadata.csv`` with a
    "File Location" column, or has ``<subject>/<study>/<series>/`` DICOM whose SeriesDescription
    names a full or low dose (at most :data:`_DETECT_HEADERS` headers read)."""
    root = Path(root)
    if not root.is_dir() or _has_mayo_patients(root):
        return False
    if find_metadata_csv(root) is not None:
        return True
    read = 0
    for subject in _candidate_subjects(root):
        for _, files in _series_of(subject):
            try:
                if dose_kind(_header(files[0])["SeriesDescription"]) is not None:
                    return True
            except MACHINE_FAULTS:
                raise
            except Exception:  # pydicom raises many types on damaged input
                pass
            read += 1
            if read >= _DETECT_HEADERS:
                return False
    return False


def list_tcia_subjects(root: Path, thickness: str) -> list[str]:
    """Sorted subjects of ``root`` with a full- and a low-dose series at ``thickness``; each subject
    without any pair is skipped with a warning naming the reason (once per process)."""
    index = scan_tcia(root)
    for name, why in index.skipped(thickness):
        if index.subjects[name].pairs:
            log.info("subject %s skipped: %s", name, why)
        else:
            _warn_once(("skip", str(index.subjects[name].folder)), "subject %s skipped: %s", name, why)
    return index.patients(thickness)


def load_tcia_pairs(root: Path, patient: str, thickness: str, z_tolerance_mm: float = Z_TOLERANCE_MM
                    ) -> Iterator[PairedVolume]:
    """Every full/low-dose pair of one subject at ``thickness``, read one at a time and checked slice by
    slice as for the Mayo layout (:func:`vagan.io.mayo.pair_volumes`), with the LDCT's ``dose``."""
    from vagan.io.dicom import read_dicom_series

    subject = scan_tcia_subject(root, patient)
    pairs = subject.at(thickness)
    if not pairs:
        raise InputDataError(f"{subject.folder}: subject {patient} has {subject.why_skipped(thickness)}")
    for pair in pairs:
        ldct = read_dicom_series(pair.low.folder)
        ndct = read_dicom_series(pair.full.folder)
        yield pair_volumes(patient, ldct, ndct, pair.label, z_tolerance_mm, dose=pair.dose)


def empty_root_hint(root: Path, thickness: str) -> str:
    """Why a TCIA root lists no subject at ``thickness``: the thicknesses it has, and the skipped subjects."""
    index = scan_tcia(root)
    if not index.subjects:
        return (f"no subject folder with <study>/<series>/ DICOM files under {root} (expected "
                f"{COLLECTION}/<Subject>/<date>-NA-NA-<uid>/<n>.000000-Full Dose Images-<uid>/1-001.dcm)")
    counts: dict[str, int] = {}
    for subject in index.subjects.values():
        for label in subject.thicknesses():
            counts[label] = counts.get(label, 0) + 1
    have = ", ".join(f"{label} ({n} subject{'s' if n > 1 else ''})" for label, n in sorted(counts.items()))
    skipped = [name for name, subject in index.subjects.items() if not subject.pairs]
    text = f"no subject with a full- and a low-dose series at {thickness} (SliceThickness)"
    text += f"; pairs exist at {have}: set data.thickness to one of them or {ANY_THICKNESS!r}" if have else ""
    return text + (f"; {len(skipped)} subject(s) without any pair: {', '.join(sorted(skipped))}" if skipped else "")
