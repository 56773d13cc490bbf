"""Deployment export of a trained generator to ONNX, verified in onnxruntime.

The exported graph is the whole inference path of :class:`~vagan.inference.denoise.NetworkDenoiser`
in float32, so a deployment needs nothing of vagan:

* input ``hu``: float32 ``(B, 1, H, W)`` in HU (dynamic ``B``, ``H``, ``W``);
* output ``denoised``: float32 ``(B, 1, H, W)`` in HU: normalised with the model's HU range
  (clipped to [0, 1]), the generator, the image clamped to [0, 1] and mapped back to HU; input
  pixels outside the HU range (padding, metal) pass through unchanged;
* output ``attention`` (attentive models only): the learned map ``M_T`` in [0, 1], ``(B, 1, H, W)``.

The file is self-contained (weights inside, no external data), written atomically, and only kept
when onnxruntime reproduces PyTorch fp32 within :data:`TOLERANCE_HU` on a check slice and on a
second, non-square batch of another size.

The graph is made with the TorchScript exporter (``torch.onnx.export(dynamo=False)``): it needs
no ``onnxscript``, writes the requested opset (the torch.export-based exporter starts at opset
18), and exports the small vagan models in about a second. Tracing bakes Python-level shape
arithmetic into constants; the one such place that matters, the RED generator padding its input
to a multiple of 4, is done here in traced tensor arithmetic instead (see :class:`HUExportModule`),
and the verification on a second size whose sides are not multiples of 4 guards it.

``onnx`` and ``onnxruntime`` are optional: ``pip install "vagan[onnx]"``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vagan.errors import (
    ConfigError,
    ExportError,
    InputDataError,
    MissingResourceError,
    VaganError,
)
from vagan.inference.denoise import Denoised, NetworkDenoiser, Progress, as_slices
from vagan.inference.model_loading import TrainedModel
from vagan.io.atomic import atomic_file, check_output
from vagan.io.windowing import HURange
from vagan.precision import Precision
from vagan.models.generator import REDGenerator
from vagan.models.registry import min_input_side
from vagan.models.vagan_generator import AttentiveGenerator

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "vagan[onnx]" (or pip install onnx onnxruntime)'
DEFAULT_OPSET = 17
MIN_OPSET = 13
"""Dynamic padding and slicing need opset 11+; 13 is the oldest tested."""
MAX_OPSET = 20
"""The newest opset the TorchScript exporter of torch writes."""
TOLERANCE_HU = 1.0
"""Largest accepted |onnxruntime - PyTorch fp32| of the denoised HU."""
ATTENTION_TOLERANCE = 1e-3
"""Largest accepted |onnxruntime - PyTorch fp32| of M_T (a map in [0, 1])."""
INPUT_NAME = "hu"
OUTPUT_NAME = "denoised"
ATTENTION_NAME = "attention"
SECOND_CHECK_SHAPE = (2, 201, 234)
"""The second verification: another batch size, non-square, sides not multiples of 4."""
MIN_SIDE = 4
"""Smallest slice side the graph takes (reflect padding to a multiple of 4 needs 4 pixels)."""


def _require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or a one-line :class:`MissingResourceError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingResourceError(f"{purpose} needs the optional package {module!r}, which is not installed; "
                         f"{INSTALL_HINT}") from None


def _red_forward(red: REDGenerator, x: torch.Tensor) -> torch.Tensor:
    """``red(x).image`` with the padding to a multiple of ``red.scale_factor`` done in traced arithmetic.

    :func:`vagan.models.generator.pad_to_multiple` decides on padding with Python ints, which the
    tracer freezes to the example's size; here the amounts are computed from the traced shape, so
    the generator itself always sees a multiple of 4 (its own padding is then a no-op).
    """
    h, w = x.shape[-2], x.shape[-1]
    m = red.scale_factor
    pad_h = (m - h % m) % m
    pad_w = (m - w % m) % m
    padded = F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")
    return red(padded).image[:, :, :h, :w]


class HUExportModule(nn.Module):
    """HU in, denoised HU out (and ``M_T``): what :class:`NetworkDenoiser` does in fp32, as one module.

    Args:
        generator: a vagan generator returning :class:`~vagan.models.outputs.GeneratorOutput`.
        hu_range: the model's HU range (network units are ``hu_range.to_unit``).
        with_attention: return ``(denoised, M_T)``; needs an attentive generator.
    """

    def __init__(self, generator: nn.Module, hu_range: HURange, with_attention: bool = False) -> None:
        super().__init__()
        self.generator = generator
        self.hu_range = hu_range
        self.with_attention = with_attention

    def _network(self, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = self.generator
        if isinstance(g, AttentiveGenerator):
            if g.attention is None:
                return _red_forward(g.generator, unit), None
            m_t = g.attention(unit)[-1]
            return _red_forward(g.generator, torch.cat([unit, m_t], dim=1)), m_t
        if isinstance(g, REDGenerator):
            return _red_forward(g, unit), None
        out = g(unit)
        return out.image, out.final_attention

    def forward(self, hu: torch.Tensor):
        image, attention = self._network(self.hu_range.to_unit(hu))
        denoised = self.hu_range.to_hu(image.float().clamp(0, 1))
        outside = (hu < self.hu_range.lo) | (hu > self.hu_range.hi)  # same rule as NetworkDenoiser
        denoised = torch.where(outside, hu, denoised)
        if self.with_attention:
            if attention is None:
                raise ValueError("with_attention=True needs an attentive generator")
            return denoised, attention.float()
        return denoised


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime matches PyTorch fp32.

    ``max_abs_diff_hu`` / ``rms_diff_hu`` are over the check slice(s) of shape ``check_shape``
    ``(Z, H, W)``; ``second_shape`` / ``second_max_abs_diff_hu`` are the batch of another size that
    exercises the dynamic axes.
    """

    path: Path
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    check_shape: tuple[int, int, int]
    max_abs_diff_hu: float
    rms_diff_hu: float
    second_shape: tuple[int, int, int]
    second_max_abs_diff_hu: float
    max_abs_diff_attention: float | None = None


def default_check_slice(size: int = 256, noise_hu: float = 40.0, seed: int = 0) -> np.ndarray:
    """A synthetic abdomen phantom slice (the whole body in the field) plus Gaussian noise, in HU."""
    from vagan.physics.phantom import make_phantom_slice

    rng = np.random.default_rng(seed)
    spacing = 358.4 / size  # the phantom's default 358.4 mm field at any size
    hu = make_phantom_slice(size, spacing, rng)
    return (hu + rng.normal(0.0, noise_hu, hu.shape)).astype(np.float32)


def check_export(path: Path, *, opset: int = DEFAULT_OPSET, overwrite: bool = False,
                 inputs: Sequence[Path] = ()) -> Path:
    """Everything an export can refuse before any work: the output, the opset, the optional packages.

    Raises:
        ConfigError: ``path`` is not a ``.onnx`` file, or ``opset`` is out of range.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        VaganError: ``onnx`` or ``onnxruntime`` is not installed.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ConfigError(f"output {path} must be a .onnx file (e.g. {path.with_suffix('.onnx').name})")
    if path.is_dir():
        raise ConfigError(f"output {path} is a folder; give a .onnx file path")
    check_output(path, overwrite, inputs)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset {opset} is not supported: choose {MIN_OPSET} to {MAX_OPSET} "
                          f"(default {DEFAULT_OPSET})")
    _require("onnx", "ONNX export")
    _require("onnxruntime", "verifying the ONNX export")
    return path


def _cpu_fp32_copy(model: TrainedModel) -> TrainedModel:
    """The model with a private CPU float32 copy of its generator (the caller's model is left alone)."""
    generator = copy.deepcopy(model.generator).to("cpu", torch.float32).eval()
    return dataclasses.replace(model, generator=generator)


def _min_side(generator: nn.Module) -> int:
    return max(MIN_SIDE, min_input_side(generator))


def _to_onnx_bytes(module: HUExportModule, opset: int, output_names: list[str]) -> bytes:
    """Trace ``module`` with the TorchScript exporter into an in-memory ONNX model."""
    example = torch.from_numpy(default_check_slice(64, seed=1))[None, None]
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The shape-dependent Python in the models is either handled by HUExportModule or a check
        # that holds at every size; the verification below catches any size the trace got wrong.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # dynamo=False is deliberate (see the module doc); its deprecation notice is not for users.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*feature will be removed")
        # torch < 2.5 has no ``dynamo`` argument (and only the TorchScript exporter)
        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(module, (example,), buffer, **legacy, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=output_names,
                          dynamic_axes={name: axes for name in [INPUT_NAME, *output_names]},
                          do_constant_folding=True)
    return buffer.getvalue()


def _finish_model(data: bytes, model: TrainedModel, with_attention: bool, min_side: int) -> bytes:
    """Fix the outputs' static channel axis, add vagan metadata, check the graph; the serialised bytes."""
    onnx = _require("onnx", "ONNX export")
    proto = onnx.load_from_string(data)
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[1].Clear()
            dims[1].dim_value = 1
    from vagan import __version__

    hu_range = model.hu_range
    proto.producer_name = "vagan"
    proto.producer_version = __version__
    proto.doc_string = (f"vagan {model.name}: input '{INPUT_NAME}' float32 (B, 1, H, W) in HU; output "
                        f"'{OUTPUT_NAME}' float32 (B, 1, H, W) in HU"
                        + (f", '{ATTENTION_NAME}' M_T in [0, 1]" if with_attention else "")
                        + f"; HU outside [{hu_range.lo:g}, {hu_range.hi:g}] pass through unchanged")
    meta = {"vagan.name": model.name, "vagan.preset": model.config.preset, "vagan.stage": model.stage,
            "vagan.generator": model.config.model.generator, "vagan.hu_lo": f"{hu_range.lo:g}",
            "vagan.hu_hi": f"{hu_range.hi:g}", "vagan.min_side": str(min_side), "vagan.version": __version__}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()), float(np.sqrt(np.mean(d**2)))


def _second_check_batch(base: np.ndarray) -> np.ndarray:
    """Two crops of another, non-square size (sides not multiples of 4) from a phantom slice."""
    z, h, w = SECOND_CHECK_SHAPE
    return np.stack([base[:h, :w], base[-h:, -w:][::-1]]).astype(np.float32)[:z]


def export_onnx(model: TrainedModel, out_path: Path, *, opset: int = DEFAULT_OPSET, overwrite: bool = False,
                check_hu: np.ndarray | None = None, attention: bool = True,
                tolerance_hu: float = TOLERANCE_HU) -> ExportReport:
    """Export ``model`` to a self-contained ONNX file and verify it in onnxruntime.

    Args:
        model: a loaded model (:func:`~vagan.inference.model_loading.load_trained_model`); it is not
            modified (the export works on a CPU float32 copy).
        out_path: the ``.onnx`` file to write (atomically: a temporary sibling renamed at the end).
        opset: ONNX opset, :data:`MIN_OPSET` to :data:`MAX_OPSET`.
        overwrite: replace an existing ``out_path``.
        check_hu: HU slice(s) ``(H, W)`` or ``(Z, H, W)`` for the verification; default: a 256x256
            phantom slice with 40 HU noise (:func:`default_check_slice`).
        attention: add the ``attention`` output (M_T) for attentive models.
        tolerance_hu: largest accepted |onnxruntime - PyTorch fp32| in HU.

    Raises:
        ConfigError: ``out_path`` is not a ``.onnx`` file, or an unsupported ``opset``.
        OutputExistsError: ``out_path`` exists and ``overwrite`` is False.
        VaganError: onnx/onnxruntime missing, or the verification failed (nothing is written then).
    """
    out_path = check_export(out_path, opset=opset, overwrite=overwrite)
    phantom = default_check_slice()
    check = phantom[None] if check_hu is None else as_slices(check_hu)
    local = _cpu_fp32_copy(model)
    min_side = _min_side(local.generator)
    if min(check.shape[1:]) < min_side:
        raise InputDataError(f"check slice of {check.shape[1]}x{check.shape[2]} is too small for {model.name} "
                             f"(at least {min_side}x{min_side})")
    with_attention = attention and local.has_attention
    output_names = [OUTPUT_NAME, ATTENTION_NAME] if with_attention else [OUTPUT_NAME]
    module = HUExportModule(local.generator, local.hu_range, with_attention).eval()
    try:
        data = _finish_model(_to_onnx_bytes(module, opset, output_names), local, with_attention, min_side)
    except VaganError:
        raise
    except Exception as err:  # noqa: BLE001 - exporter and checker errors have many types; one line for the user
        raise ExportError(f"ONNX export of {model.name} at opset {opset} failed ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:300] if str(err) else 'no message'}); try another --opset") from None

    reference = NetworkDenoiser(local, batch_size=2)  # fp32: the default precision
    second = _second_check_batch(phantom)
    with atomic_file(out_path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
        exported = OnnxDenoiser(tmp, name=local.name, batch_size=2)
        results = []
        for hu in (check, second):
            want = reference(hu, keep_attention=with_attention)
            got = exported(hu, keep_attention=with_attention)
            results.append((*_diff(got.hu, want.hu),
                            _diff(got.attention, want.attention)[0] if with_attention else None))
            if not results[-1][0] <= tolerance_hu:
                raise ExportError(f"the ONNX graph differs from PyTorch fp32 by up to {results[-1][0]:.3g} HU "
                                 f"(> {tolerance_hu:g} HU) on a {hu.shape[1]}x{hu.shape[2]} slice; "
                                 f"{out_path} was not written")
            if with_attention and not results[-1][2] <= ATTENTION_TOLERANCE:
                raise ExportError(f"the ONNX attention map differs from PyTorch fp32 by up to {results[-1][2]:.3g} "
                                 f"(> {ATTENTION_TOLERANCE:g}) on a {hu.shape[1]}x{hu.shape[2]} slice; "
                                 f"{out_path} was not written")
        del exported
    (max_hu, rms_hu, att_main), (max_second, _, att_second) = results
    log.debug("exported %s to %s (opset %d): max |ONNX - PyTorch| %.3g HU", local.name, out_path, opset, max_hu)
    return ExportReport(
        path=out_path, opset=opset, input_names=(INPUT_NAME,), output_names=tuple(output_names),
        check_shape=tuple(check.shape), max_abs_diff_hu=max_hu, rms_diff_hu=rms_hu,
        second_shape=tuple(second.shape), second_max_abs_diff_hu=max_second,
        max_abs_diff_attention=max(att_main, att_second) if with_attention else None,
    )


class OnnxDenoiser:
    """An exported ONNX file behind the :class:`~vagan.inference.denoise.Denoiser` protocol (onnxruntime).

    Args:
        path: a ``.onnx`` file written by :func:`export_onnx` (HU in, HU out).
        name: the method's name (default: the model name stored in the file, else the file stem).
        batch_size: slices per run.
        threads: onnxruntime intra-op threads (``None``: onnxruntime's default, all cores).
        providers: onnxruntime execution providers (default: CPU).
    """

    engine = "onnxruntime"  # see vagan.inference.engine
    precision: Precision | None = None  # set by vagan.inference.engine: fp32, and why this engine
    model: TrainedModel | None = None  # the model the graph was exported from, where known

    def __init__(self, path: Path, name: str | None = None, batch_size: int = 2, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        ort = _require("onnxruntime", "running an ONNX model")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputDataError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise InputDataError(f"{self.path}: not a loadable ONNX model ({first})") from None
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise InputDataError(f"{self.path}: expected one (B, 1, H, W) input, got "
                                 f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_name = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]
        self.attention_name = ATTENTION_NAME if ATTENTION_NAME in outputs else None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.name = name or self.metadata.get("vagan.name") or self.path.stem
        self.min_side = int(self.metadata.get("vagan.min_side", 1))
        self.batch_size = batch_size

    @property
    def has_attention(self) -> bool:
        return self.attention_name is not None

    def __call__(self, hu: np.ndarray, progress: Progress | None = None, keep_attention: bool = False) -> Denoised:
        hu = as_slices(hu)
        if min(hu.shape[1:]) < self.min_side:
            raise InputDataError(f"{self.path} takes slices of at least {self.min_side}x{self.min_side} pixels, "
                                 f"got {hu.shape[1]}x{hu.shape[2]}")
        out = np.empty_like(hu, dtype=np.float32)
        attention = np.empty_like(out) if keep_attention and self.has_attention else None
        names = [self.output_name] + ([self.attention_name] if attention is not None else [])
        for start in range(0, hu.shape[0], self.batch_size):
            chunk = np.ascontiguousarray(hu[start:start + self.batch_size])
            n = len(chunk)
            result = self.session.run(names, {self.input_name: chunk[:, None]})
            out[start:start + n] = result[0][:, 0]
            if attention is not None:
                attention[start:start + n] = result[1][:, 0]
            if progress is not None:
                progress(n)
        return Denoised(out, attention)
