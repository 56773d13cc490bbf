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
    build_dataclass,
    merge,
    parse_overrides,
)
from vagan.errors import ConfigError
from vagan.evaluation.metrics import PatchSpec
from vagan.precision import PrecisionName

KEYWORDS: tuple[str, ...] = ("ldct", "ndct", "bm3d", "bm3d:SIGMA_HU")
FID_NETS: tuple[str, ...] = ("random-ct", "vgg19", "inception", "none")
RESERVED_NAMES = {"LDCT": "ldct", "NDCT": "ndct"}  # the fixed panels of the comparison figure
MethodKind = Literal["ldct", "ndct", "bm3d", "model"]


@dataclass(frozen=True)
class MethodSpec:
    """One row of Table II: a display ``name`` (``""``: automatic) and what to run (``spec``).

    ``spec`` is ``ldct`` | ``ndct`` | ``bm3d`` | ``bm3d:SIGMA_HU`` | an existing checkpoint or
    run folder. Anything else raises :class:`ConfigError`.
    """

    name: str = ""
    spec: str = ""

    def __post_init__(self) -> None:
        where = f"method {self.name or self.spec!r}"
        spec = self.spec.strip()
        if not spec:
            raise ConfigError(f"{where}: empty spec; expected one of {list(KEYWORDS)} or a checkpoint/run folder")
        low = spec.lower()
        if low.startswith("bm3d:"):
            try:
                sigma = float(spec.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"{where}: {spec!r} is not bm3d:SIGMA_HU with a number, e.g. bm3d:25") from None
            if not (math.isfinite(sigma) and sigma > 0):
                raise ConfigError(f"{where}: BM3D sigma must be a positive number of HU, got {spec!r}")
        elif low not in ("ldct", "ndct", "bm3d") and not Path(spec).expanduser().exists():
            close = difflib.get_close_matches(low, ["ldct", "ndct", "bm3d"], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown method spec {spec!r}: not one of {list(KEYWORDS)} and no such "
                              f"checkpoint or run folder{hint}")
        reserved = RESERVED_NAMES.get(self.name)
        if reserved is not None and low != reserved:
            raise ConfigError(f"{where}: the name {self.name!r} is reserved for the {reserved!r} method; rename it")

    @property
    def kind(self) -> MethodKind:
        low = self.spec.strip().lower()
        if low in ("ldct", "ndct", "bm3d"):
            return low  # type: ignore[return-value]
        return "bm3d" if low.startswith("bm3d:") else "model"

    @property
    def sigma_hu(self) -> float | None:
        """BM3D's fixed sigma in HU, or ``None`` (estimated per slice / not BM3D)."""
        low = self.spec.strip().lower()
        return float(low.split(":", 1)[1]) if low.startswith("bm3d:") else None

    @property
    def path(self) -> Path | None:
        return Path(self.spec.strip()).expanduser() if self.kind == "model" else None

    def default_name(self) -> str:
        """The automatic name of a non-model method (models are named after their checkpoint)."""
        if self.kind == "bm3d":
            return "BM3D" if self.sigma_hu is None else f"BM3D (sigma {self.sigma_hu:g} HU)"
        return {"ldct": "LDCT", "ndct": "NDCT (oracle)"}.get(self.kind, self.spec)


def _method_specs(raw: Any) -> tuple[MethodSpec, ...]:
    """Methods from ``{name: spec}``, or a list of ``spec`` / ``"name=spec"`` / ``[name, spec]`` /
    ``{name:, spec:}`` / :class:`MethodSpec` items."""
    if isinstance(raw, Mapping):
        return tuple(MethodSpec(str(k), str(v)) for k, v in raw.items())
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise ConfigError(f"methods: expected a list or a mapping name -> spec, got {raw!r}")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, MethodSpec):
            out.append(item)
        elif isinstance(item, str):
            name, sep, spec = item.partition("=")
            out.append(MethodSpec(name.strip(), spec.strip()) if sep else MethodSpec("", item))
        elif isinstance(item, Mapping) and set(item) <= {"name", "spec"} and "spec" in item:
            out.append(MethodSpec(str(item.get("name", "")), str(item["spec"])))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out.append(MethodSpec(str(item[0]), str(item[1])))
        else:
            raise ConfigError(f"methods[{i}]: expected 'spec', 'name=spec', [name, spec] or "
                              f"{{name: ..., spec: ...}}, got {item!r}")
    return tuple(out)


@dataclass(frozen=True)
class EvaluationConfig:
    """What :func:`evaluate` runs, on which slices, and how it reports.

    Data: ``data_root``/``split``/``split_seed``/``thickness`` default to the first model's
    ``config.data`` (then to ``DataConfig``'s defaults); ``subset`` is a subset of the split or
    ``"all"`` (every patient under ``data_root``); ``max_slices`` caps the test slices.
    FID: ``fid_net`` ``random-ct`` (default: an untrained fixed-seed net, rankings only),
    ``vgg19`` (ImageNet VGG19 ``fid_vgg_layer`` from ``fid_weights`` or the torch hub cache),
    ``inception`` (torch-fidelity's weights) or ``none``.
    Timing: ``timing_slices`` test LDCT slices centre-padded (air) / cropped to
    ``timing_size``^2, one warm-up call, then one timed call per slice; 0 switches it off.
    Figures: ``figure_slices`` test slices in Fig. 2/3 and as rows of Fig. 4; ``zoom`` is
    ``(row, col, height, width)`` or ``None`` for a box of a quarter of the image centred on the body.
    """

    methods: tuple[MethodSpec, ...] = ()
    data_root: str | None = None
    subset: str = "test"
    split: dict[str, Any] | None = None
    split_seed: int | None = None
    thickness: str | None = None
    max_slices: int | None = None
    fid_net: Literal["random-ct", "vgg19", "inception", "none"] = "random-ct"
    fid_weights: str | None = None
    fid_seed: int = 0
    fid_vgg_layer: str = "conv5_4"
    device: str = "cpu"
    precision: PrecisionName = "auto"
    compile: bool = False
    batch_size: int = 4
    timing_slices: int = 3
    timing_size: int = 512
    patches: PatchSpec = field(default_factory=PatchSpec)
    zoom: tuple[int, int, int, int] | None = None
    figure_slices: int = 2
    title: str = "VAGAN evaluation"

    def __post_init__(self) -> None:
        methods = _method_specs(self.methods)
        object.__setattr__(self, "methods", methods)
        if not methods:
            raise ConfigError("methods is empty; give at least one of " + ", ".join(KEYWORDS) + " or a model path")
        names = [m.name for m in methods if m.name]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"methods: the names {dup} are used twice; give each method its own name")
        if self.fid_net not in FID_NETS:
            raise ConfigError(f"fid_net {self.fid_net!r} is not one of {list(FID_NETS)}")
        checks = {"batch_size": (self.batch_size, 1), "timing_slices": (self.timing_slices, 0),
                  "timing_size": (self.timing_size, 16), "figure_slices": (self.figure_slices, 0)}
        if self.max_slices is not None:
            checks["max_slices"] = (self.max_slices, 1)
        for key, (value, lowest) in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ConfigError(f"{key}: expected an integer >= {lowest}, got {value!r}")
        if not self.subset:
            raise ConfigError("subset is empty; use test, val, train or all")
        if self.zoom is not None:
            zoom = tuple(self.zoom)
            if len(zoom) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in zoom) \
                    or zoom[0] < 0 or zoom[1] < 0 or zoom[2] < 1 or zoom[3] < 1:
                raise ConfigError(f"zoom: expected (row, col, height, width) integers with height, width >= 1, "
                                  f"got {self.zoom!r}")
            object.__setattr__(self, "zoom", zoom)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], overrides: Sequence[str] = ()) -> EvaluationConfig:
        """Build from plain (YAML) data plus ``key=value`` overrides; unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"evaluation config: expected a mapping, got {type(data).__name__}")
        raw = merge(dict(data), parse_overrides(list(overrides))) if overrides else dict(data)
        if "amp" in raw:  # written before the precision policy: amp false = fp32, amp true = auto
            raw.setdefault("precision", "auto" if raw.pop("amp") else "fp32")
        if "methods" in raw:
            raw["methods"] = _method_specs(raw["methods"])
        if isinstance(raw.get("patches"), Mapping):
            try:
                raw["patches"] = build_dataclass(PatchSpec, dict(raw["patches"]), "patches")
            except ValueError as err:
                raise ConfigError(f"patches: {err}") from None
        return build_dataclass(cls, raw, "")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["methods"] = [{"name": m.name, "spec": m.spec} for m in self.methods]
        return out

