"""What ``vagan evaluate`` runs: the methods of Table II, the test slices, FID, timing and figures.

Built from YAML and the command line (:meth:`EvaluationConfig.from_dict`); every value is
checked here, so a mistake is one :class:`~vagan.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vagan.config_schema import (
    Section,
    bounded,
    build_dataclass,
    build_section,
)
from vagan.errors import ConfigError
from vagan.evaluation.feature_nets import FeatureKind
from vagan.evaluation.metrics import PatchSpec
from vagan.inference.engine import EngineName
from vagan.inference.pretrained import resolve_model, shipped_models
from vagan.io.mayo import DataSplit
from vagan.precision import PrecisionName, upgrade_amp
from vagan.quality.config import QualityConfig

KEYWORDS: tuple[str, ...] = ("ldct", "ndct", "bm3d", "bm3d:SIGMA_HU", "bm3d-psd", "bm3d-psd:AUTOCORRELATION.npy")
REFERENCE_METHODS: tuple[str, ...] = ("ldct", "bm3d")  # what the demo and a study compare the networks with
FidNet = FeatureKind | Literal["none"]
RESERVED_NAMES = {"LDCT": "ldct", "NDCT": "ndct"}  # the fixed panels of the comparison figure
MethodKind = Literal["ldct", "ndct", "bm3d", "model"]


@dataclass(frozen=True)
class MethodSpec(Section):
    """One row of Table II: a display ``name`` (``""``: automatic) and what to run (``spec``).

    ``spec`` is ``ldct`` | ``ndct`` | ``bm3d`` | ``bm3d:SIGMA_HU`` | ``bm3d-psd`` (BM3D given the noise
    power spectrum measured on non-test pairs) | ``bm3d-psd:FILE.npy`` (a noise autocorrelation, as
    ``vagan evaluate`` writes it) | an existing checkpoint or run folder. Anything else raises
    :class:`ConfigError`.
    """

    name: str = ""
    spec: str = ""

    def check(self) -> None:
        spec = self.spec.strip()
        if not spec:
            raise ConfigError(f"spec: empty; expected one of {list(KEYWORDS)} or a checkpoint/run folder")
        low = spec.lower()
        if low.startswith("bm3d-psd:"):
            path = Path(spec.split(":", 1)[1]).expanduser()
            if not path.is_file():
                raise ConfigError(f"spec: {spec!r}: no such noise autocorrelation file {str(path)!r} (vagan evaluate "
                                  "with bm3d-psd writes bm3d_psd_autocorrelation.npy into its output folder)")
        elif low.startswith("bm3d:"):
            try:
                sigma = float(spec.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"spec: {spec!r} is not bm3d:SIGMA_HU with a number, e.g. bm3d:25") from None
            if not (math.isfinite(sigma) and sigma > 0):
                raise ConfigError(f"spec: BM3D sigma must be a positive number of HU, got {spec!r}")
        elif low not in ("ldct", "ndct", "bm3d", "bm3d-psd") and not Path(spec).expanduser().exists() \
                and spec not in shipped_models():
            shipped = sorted(shipped_models())
            close = difflib.get_close_matches(spec, ["ldct", "ndct", "bm3d", "bm3d-psd", *shipped], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"spec: unknown method spec {spec!r}: not one of {list(KEYWORDS)}, no shipped model "
                              f"({', '.join(shipped) or 'none in this version'}; see `vagan models`) and no such "
                              f"checkpoint or run folder{hint}")
        reserved = RESERVED_NAMES.get(self.name)
        if reserved is not None and low != reserved:
            raise ConfigError(f"name: {self.name!r} is reserved for the {reserved!r} method; rename it")

    @classmethod
    def from_value(cls, value: Any, where: str) -> MethodSpec:
        """One method from ``spec``, ``"name=spec"`` or ``[name, spec]`` (an existing path is a spec, ``=`` or not)."""
        if isinstance(value, str):
            name, sep, spec = value.partition("=")
            plain = not sep or Path(value).expanduser().exists()
            return build_dataclass(cls, {"spec": value} if plain else {"name": name.strip(), "spec": spec.strip()},
                                   where)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return build_dataclass(cls, {"name": str(value[0]), "spec": str(value[1])}, where)
        raise ConfigError(f"{where}: expected 'spec', 'name=spec', [name, spec] or {{name: ..., spec: ...}}, "
                          f"got {value!r}")

    @property
    def kind(self) -> MethodKind:
        low = self.spec.strip().lower()
        if low in ("ldct", "ndct", "bm3d"):
            return low  # type: ignore[return-value]
        return "bm3d" if low == "bm3d-psd" or low.startswith(("bm3d:", "bm3d-psd:")) else "model"

    @property
    def psd(self) -> bool:
        """BM3D-PSD: BM3D told the noise power spectrum rather than one sigma."""
        return self.spec.strip().lower().startswith("bm3d-psd")

    @property
    def psd_file(self) -> Path | None:
        """The noise autocorrelation file of ``bm3d-psd:FILE``, else ``None``."""
        spec = self.spec.strip()
        return Path(spec.split(":", 1)[1]).expanduser() if spec.lower().startswith("bm3d-psd:") else None

    @property
    def sigma_hu(self) -> float | None:
        """BM3D's fixed sigma in HU, or ``None`` (estimated per slice / not BM3D)."""
        low = self.spec.strip().lower()
        return float(low.split(":", 1)[1]) if low.startswith("bm3d:") else None

    @property
    def path(self) -> Path | None:
        """The checkpoint or run folder of a model: a shipped model's (checksums verified) or the path given."""
        if self.kind != "model":
            return None
        return resolve_model(self.spec.strip()) or Path(self.spec.strip()).expanduser()

    def default_name(self) -> str:
        """The automatic name of a non-model method (models are named after their checkpoint)."""
        if self.kind == "bm3d" and self.psd:
            return "BM3D-PSD" if self.psd_file is None else f"BM3D-PSD ({self.psd_file.name})"
        if self.kind == "bm3d":
            return "BM3D" if self.sigma_hu is None else f"BM3D (sigma {self.sigma_hu:g} HU)"
        return {"ldct": "LDCT", "ndct": "NDCT (oracle)"}.get(self.kind, self.spec)


@dataclass(frozen=True)
class EvaluationConfig(Section):
    """What :func:`evaluate` runs, on which slices, and how it reports.

    Data: ``data_root``/``split``/``split_seed``/``thickness`` default to the first model's
    ``config.data`` (then to ``DataConfig``'s defaults); ``subset`` is a subset of the split or
    ``"all"`` (every patient under ``data_root``); ``max_slices`` caps the test slices.
    FID: ``fid_net`` ``ct-quality`` (default: trained on real CT to see residual noise and blur; shipped,
    docs/fid.md), ``random-ct`` (an untrained fixed-seed net, rankings only),
    ``vgg19`` (ImageNet VGG19 ``fid_vgg_layer`` from ``fid_weights`` or the torch hub cache),
    ``inception`` (torch-fidelity's weights) or ``none``. ``fid_tile`` N (default 64) takes one feature
    vector per N x N tile inside the body (NDCT mean above -500 HU, the same tiles for every method),
    so that a test set of a few slices gives hundreds of samples and air does not dilute them; 0 takes
    one per whole slice (the usual protocol for ``inception``).
    BM3D: a plain ``bm3d`` or ``bm3d-psd`` is calibrated on ``calibration_slices`` LDCT/NDCT slices of
    validation, then training patients (two of each, evenly spaced through the series).
    Timing: ``timing_slices`` test LDCT slices centre-padded (air) / cropped to
    ``timing_size``^2, one warm-up call, then one timed call per slice; 0 switches it off.
    Figures: ``figure_slices`` test slices in Fig. 2/3 and as rows of Fig. 4; ``zoom`` is
    ``(row, col, height, width)`` or ``None`` for a box of a quarter of the image centred on the body.
    Task-based quality: ``quality`` (:class:`~vagan.quality.config.QualityConfig`, off by default;
    ``--set quality.enabled=true``) scans the quality phantom and reports NPS, TTF, CT numbers and d'.
    """

    methods: tuple[MethodSpec, ...] = ()
    data_root: str | None = None
    subset: str = "test"
    split: DataSplit | None = None
    split_seed: int | None = bounded(None, ge=0)
    thickness: str | None = None
    max_slices: int | None = bounded(None, ge=1)
    fid_net: FidNet = "ct-quality"
    fid_weights: str | None = None
    fid_seed: int = bounded(0, ge=0)  # numpy seeds are non-negative
    fid_vgg_layer: str = "conv5_4"
    fid_tile: int = bounded(64, ge=0)
    device: str = "cpu"
    precision: PrecisionName = "auto"
    compile: bool = False
    engine: EngineName = "auto"  # vagan.inference.engine: PyTorch or onnxruntime, the faster one measured
    batch_size: int = bounded(4, ge=1)
    calibration_slices: int = bounded(8, ge=1)  # non-test LDCT/NDCT slices that calibrate plain bm3d / bm3d-psd
    timing_slices: int = bounded(3, ge=0)
    timing_size: int = bounded(512, ge=16)
    patches: PatchSpec = field(default_factory=PatchSpec)
    zoom: tuple[int, int, int, int] | None = None
    figure_slices: int = bounded(2, ge=0)
    quality: QualityConfig = field(default_factory=QualityConfig)
    title: str = "VAGAN evaluation"

    def check(self) -> None:
        if not self.methods:
            raise ConfigError("methods: empty; give at least one of " + ", ".join(KEYWORDS) + " or a model path")
        names = [m.name for m in self.methods if m.name]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"methods: the names {dup} are used twice; give each method its own name")
        if not self.subset:
            raise ConfigError("subset: empty; use test, val, train or all")
        if 0 < self.fid_tile < 16:
            raise ConfigError(f"fid_tile: {self.fid_tile} px tiles are too small for a feature net; give 0 (whole "
                              "slices) or at least 16")
        if self.zoom is not None and (min(self.zoom[:2]) < 0 or min(self.zoom[2:]) < 1):
            raise ConfigError(f"zoom: expected (row, col, height, width) with row, col >= 0 and height, width >= 1, "
                              f"got {self.zoom!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], overrides: Sequence[str] = ()) -> EvaluationConfig:
        """Build from plain (YAML) data plus ``key=value`` overrides; unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"evaluation config: expected a mapping, got {type(data).__name__}")
        return build_section(cls, dict(data), overrides)

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """Methods given as ``{name: spec}`` or a list of shorthands (:meth:`MethodSpec.from_value`); ``amp``
        (before the precision policy) becomes ``precision``: false = fp32, true = auto."""
        data = upgrade_amp(data)
        raw = data.get("methods")
        if isinstance(raw, Mapping):  # {name: spec}
            data["methods"] = [[str(k), str(v)] for k, v in raw.items()]
        elif raw is not None and not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{where + '.' if where else ''}methods: expected a list or a mapping name -> spec, "
                              f"got {raw!r}")
        return data

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["methods"] = [{"name": m.name, "spec": m.spec} for m in self.methods]
        out["split"] = self.split.to_dict() if self.split else None
        return out

