"""Command line: thin wrappers that parse arguments and call the library.

User mistakes raise :class:`vagan.errors.VaganError`; :func:`main` turns them into one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from typer.core import TyperGroup

from vagan.errors import ConfigError, VaganError

if TYPE_CHECKING:
    from vagan.evaluation.eval_config import MethodSpec
    from vagan.inference.denoise import Denoiser


def _os_error(err: OSError) -> str:
    """``[Errno 13] Permission denied: 'x'`` as ``permission denied: x`` (both paths of a rename). A full
    disk reads "no space left on device" however the library raised it (numpy says "not enough free
    space to write N bytes", with no errno)."""
    text = str(err)
    if err.errno == errno.ENOSPC or "free space" in text.lower():
        what = "no space left on device" + (f" ({text})" if err.errno != errno.ENOSPC and text else "")
    else:
        what = (err.strerror or (os.strerror(err.errno) if err.errno else "") or text or type(err).__name__).lower()
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{what}: {' -> '.join(paths)}" if paths else what


def _is_usage_error(err: Exception) -> bool:
    """A mistake on the command line (click's UsageError, which typer vendors), but not a bare
    ``vagan`` that shows the help."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return "UsageError" in names and "NoArgsIsHelpError" not in names


class _Commands(TyperGroup):
    """Runs a command; a :class:`VaganError` or a mistake on the command line becomes one ``error:``
    line and exit code 2, an :class:`OSError` of the file system (permission, disk full) exit code 1."""

    def invoke(self, ctx):  # click.Group.invoke
        from vagan.io.atomic import command_window

        try:
            with command_window():
                return super().invoke(ctx)
        except VaganError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=err.exit_code) from None
        except OSError as err:
            typer.secho(f"error: {_os_error(err)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None
        except Exception as err:
            if not _is_usage_error(err):
                raise
            where = err.ctx.command_path if getattr(err, "ctx", None) is not None else "vagan"
            message = " ".join(err.format_message().split())
            typer.secho(f"error: {message} (see `{where} --help`)", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None


app = typer.Typer(
    cls=_Commands,
    name="vagan",
    help="Visual Attention GAN for low-dose CT: simulate, train, denoise, evaluate, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from vagan import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the vagan version and exit.")) -> None:
    """Visual Attention GAN for low-dose CT: simulate, train, denoise, evaluate, report."""


Overrides = typer.Option(None, "--set", help="Override a config value as key=value, dots for nesting (repeatable), "
                         "e.g. train: --set stages.*.max_steps=50; simulate: --set patients=20.")
PRECISION_HELP = ("auto (bf16 where this CPU/GPU runs it natively and faster, else fp32), fp32, bf16 or fp16. "
                  "HU values, normalisation and the output stay float32.")


def _legacy_amp(amp: bool, precision: Optional[str]) -> Optional[str]:
    """``--amp`` (bf16 autocast on a GPU) is kept for old scripts as an alias of the default ``--precision auto``."""
    if amp:
        typer.secho("warning: --amp is replaced by --precision; the default --precision auto already uses bf16 where "
                    "the GPU or CPU runs it natively", err=True, fg=typer.colors.YELLOW)
    return precision


AmpAlias = typer.Option(False, "--amp", hidden=True, help="Old flag, replaced by --precision (auto by default).")


@app.command()
def simulate(
    out: Path = typer.Argument(..., metavar="OUT", help="New dataset folder (Mayo 2016 layout + manifest.json)."),
    from_: Optional[Path] = typer.Option(None, "--from", help="Normal-dose CT: a DICOM series folder, a NIfTI file, or "
                                         "a folder holding them (nested, e.g. a CD or PACS export); default: "
                                         "synthetic phantom patients."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML with dataset and `simulation:` settings."),
    dose: Optional[float] = typer.Option(None, "--dose", help="Dose fraction of the LDCT, e.g. 0.25 (quarter dose)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    set_: Optional[list[str]] = Overrides,
) -> None:
    """Make a paired LDCT/NDCT dataset: phantom patients, or low-dose scans simulated from your NDCT."""
    from vagan.config_schema import build_section
    from vagan.data.simulated import (
        DatasetSpec,
        write_dataset_from_series,
        write_phantom_dataset,
    )
    from vagan.devices import resolve_device

    spec = build_section(DatasetSpec, path=config, overrides=list(set_ or []))
    if dose is not None:  # typed options win over --set, as in every command
        spec = dataclasses.replace(spec, dose=dose)
    torch_device = resolve_device(device)
    if from_ is None:
        path = write_phantom_dataset(out, spec, overwrite=overwrite, device=torch_device)
    else:
        path = write_dataset_from_series(from_, out, spec.dose, spec.simulation, seed=spec.seed,
                                         overwrite=overwrite, device=torch_device, batch_size=spec.batch_size,
                                         exposure=spec.exposure, noise_pool=spec.noise_pool)
    typer.echo(f"wrote paired dataset {path} (see {path / 'manifest.json'})")


@app.command()
def train(
    config: str = typer.Option(..., "--config", "-c", help="Preset name (vagan, g_psnr, ...) or a YAML config file."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoints, logs and the config are written here."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset root (Mayo 2016 layout, vagan simulate output or TCIA LDCT-and-Projection-data download); same as --set data.root=DIR."),
    stage: Optional[list[str]] = typer.Option(None, "--stage", help="Run only this stage (repeatable); default: all."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing run in --out and start again."),
    vgg_weights: Optional[Path] = typer.Option(None, "--vgg-weights", help="torchvision VGG19 ImageNet weights (.pth) for L_Pcep."),
    precision: Optional[str] = typer.Option(None, "--precision", help=PRECISION_HELP + " Default: train.precision (auto)."),
    set_: Optional[list[str]] = Overrides,
) -> None:
    """Train a preset (both stages, or the ones named) on paired LDCT/NDCT data."""
    from vagan.training.config import load_config, with_values
    from vagan.training.trainer import train as run_training

    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite deletes it; give one of them")
    cfg = load_config(config, list(set_ or []))
    typed = {"data.root": str(data) if data is not None else None,
             "train.vgg_weights": str(vgg_weights) if vgg_weights is not None else None,
             "train.precision": precision}
    cfg = with_values(cfg, {key: value for key, value in typed.items() if value is not None})
    final = run_training(cfg, out, stages=stage, resume=resume, overwrite=overwrite)
    typer.echo(f"finished: {final}")


@app.command()
def denoise(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="DICOM series folder, .nii/.nii.gz or .npy (HU)."),
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help="Output of the same kind (a new folder for DICOM)."),
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint or run folder of a trained model, 'bm3d' (noise "
                              "sigma estimated per slice), 'bm3d:SIGMA_HU' or 'bm3d-psd:AUTOCORRELATION.npy' (the "
                              "noise spectrum `vagan evaluate` measured), as in `vagan evaluate`."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1,
                                             help="Slices per forward pass (default: 1 on CPU, 16 on GPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: Optional[str] = typer.Option(None, "--precision", help=PRECISION_HELP + " Default: auto."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network (a one-off 15-60 s, then "
                                  "faster per slice; worth it for long series). Falls back to eager with a warning."),
    engine: str = typer.Option("auto", "--engine", help="auto, torch or onnxruntime. auto: PyTorch on a GPU; on a CPU "
                               "the faster of PyTorch and onnxruntime (when installed), measured once per model and "
                               "CPU and cached (docs/performance.md, Engines)."),
    amp: bool = AmpAlias,
    attention_out: Optional[Path] = typer.Option(None, "--attention-out", help="Folder for the learned attention maps M_T."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUTPUT."),
) -> None:
    """Denoise a low-dose scan with a trained model (or BM3D); DICOM in, new derived DICOM series out."""
    from vagan.evaluation.eval_config import MethodSpec
    from vagan.inference.files import DenoiseJob, denoise_path

    from vagan.inference.engine import check_engine

    check_engine(engine)  # for every method, before anything is read
    try:
        method = MethodSpec(spec=model)
    except ConfigError as err:
        raise ConfigError(f"--model {model}: {str(err).removeprefix('spec: ')}") from None
    if method.kind in ("ldct", "ndct"):
        raise ConfigError(f"--model {model}: {method.kind} is an evaluation reference, not a denoiser; give a "
                          "checkpoint or run folder, bm3d or bm3d:SIGMA_HU")
    if method.psd and method.psd_file is None:
        raise ConfigError("--model bm3d-psd needs the noise's autocorrelation: --model bm3d-psd:FILE.npy with the "
                          "bm3d_psd_autocorrelation.npy that `vagan evaluate ... bm3d-psd` wrote for your pairs")
    model_inputs = [method.path] if method.path is not None else []
    job = DenoiseJob.checked(input_path, output_path, attention_out, overwrite, model_inputs)  # before loading anything
    denoiser = _denoiser(method, batch_size, device, _legacy_amp(amp, precision) or "auto", compile_, engine)
    notice = getattr(getattr(denoiser, "model", None), "notice", "")
    if notice:
        job = dataclasses.replace(job, notice=notice)
        typer.echo(f"note: {model} was {notice}")
    report = denoise_path(denoiser, job)
    typer.echo(f"wrote {report.slices} slice(s) of {report.shape[0]}x{report.shape[1]} to {report.output}")
    if report.skipped:
        from vagan.io.dicom_read import summarise_skipped

        listed = "; ".join(summarise_skipped(list(report.skipped)))
        typer.echo(f"skipped {len(report.skipped)} file(s) of {input_path} that are not slices of the series: {listed}")
    if report.attention_dir is not None:
        typer.echo(f"attention maps in {report.attention_dir}")


def _denoiser(method: MethodSpec, batch_size: int | None, device: str, precision: str, compile_: bool,
              engine: str) -> Denoiser:
    if method.kind == "bm3d":
        from vagan.evaluation.inputs import bm3d_denoiser

        if method.sigma_hu is None and not method.psd:
            logging.getLogger(__name__).warning(
                "BM3D sigma is estimated per slice by a white-noise estimator, which reads CT noise too low; for a "
                "fair BM3D give --model bm3d:SIGMA_HU with the sigma `vagan evaluate` calibrated on your pairs")
        return bm3d_denoiser(method)
    from vagan.devices import resolve_device
    from vagan.inference.engine import network_denoiser
    from vagan.inference.model_loading import load_trained_model
    from vagan.precision import resolve_precision

    torch_device = resolve_device(device)
    chosen = resolve_precision(precision, torch_device)
    logging.getLogger(__name__).info("precision: %s", chosen.describe())
    return network_denoiser(load_trained_model(method.path, torch_device), engine=engine, precision=chosen,
                            batch_size=batch_size, compile=compile_)


@app.command()
def evaluate(
    methods: Optional[list[str]] = typer.Argument(None, metavar="METHOD...",
                                                  help="ldct, bm3d, bm3d:SIGMA_HU, bm3d-psd, bm3d-psd:FILE.npy, ndct, or a checkpoint/run folder "
                                                       "(name=SPEC to name it)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (report.md/.html, figures, metrics.csv)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Evaluation YAML (methods, data, FID, ...)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Test dataset root (default: the first model's data)."),
    subset: Optional[str] = typer.Option(None, "--subset", help="test (default), val, train or all."),
    fid_net: Optional[str] = typer.Option(None, "--fid-net", help="ct-quality (default: trained on real CT, docs/fid.md), random-ct (untrained), vgg19, inception or none."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    precision: Optional[str] = typer.Option(None, "--precision", help=PRECISION_HELP + " Default: auto."),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the networks."),
    engine: Optional[str] = typer.Option(None, "--engine", help="auto (default), torch or onnxruntime, as in denoise."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    amp: bool = AmpAlias,
    set_: Optional[list[str]] = Overrides,
) -> None:
    """Table II (PSNR, SSIM, RMSE, FID, ms/slice) for every method on a test set, with figures and a report."""
    from vagan.config_schema import read_yaml_mapping
    from vagan.evaluation.eval_config import EvaluationConfig
    from vagan.evaluation.runner import evaluate as run_evaluation

    raw = read_yaml_mapping(config) if config else {}
    if methods:
        raw["methods"] = list(methods)
    engine_set = [f"engine={engine}"] if engine is not None else []  # validated with the file's keys
    cfg = EvaluationConfig.from_dict(raw, list(set_ or []) + engine_set)
    typed = {"data_root": str(data) if data is not None else None, "subset": subset, "fid_net": fid_net,
             "device": device, "precision": _legacy_amp(amp, precision), "compile": compile_}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in typed.items() if v is not None})  # typed options win, as in train
    result = run_evaluation(cfg, out, overwrite=overwrite)
    typer.echo(" | ".join(result.table.columns))
    for row in result.table.rows:
        typer.echo(" | ".join(str(cell) for cell in row))
    typer.echo(f"report: {result.report.markdown} and {result.report.html}")


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., metavar="RUN...", help="Run folders written by `vagan train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (report.md/.html and figures)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
) -> None:
    """Training report: loss and validation curves, and validation PSNR/SSIM at the end of each stage."""
    from vagan.evaluation.training_report import write_training_report

    paths = write_training_report(list(runs), out, overwrite=overwrite)
    typer.echo(f"report: {paths.markdown} and {paths.html}")


@app.command()
def demo(
    out: Path = typer.Argument(Path("demo-output"), metavar="[OUT]", help="Output folder (default: demo-output)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Demo YAML (default: the shipped demo.yaml)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a demo.yaml value, e.g. --set "
                                             "steps.psnr=100 or --set dataset.patients=6 (repeatable)."),
) -> None:
    """Simulate phantom data, train g_psnr/ga_psnr/vagan briefly, run BM3D, evaluate and write the report."""
    from vagan.demo import load_demo_config, run_demo

    report = run_demo(out, load_demo_config(config, list(set_ or [])), overwrite=overwrite, device=device,
                      inputs=[config] if config is not None else [])
    typer.echo(f"demo report: {report} (and {report.with_suffix('.html')})")


@app.command()
def study(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Study YAML: dataset, presets, seeds, budget, evaluation."),
    out: Path = typer.Argument(..., metavar="OUT", help="Study folder; a folder holding this study is resumed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again: replace OUT (a study vagan wrote)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a study YAML value, e.g. --set "
                                             "budget.patches=20000 or --set seeds=[0,1] (repeatable)."),
) -> None:
    """Train presets x seeds with equal budgets, evaluate them together and report intervals and the paper's orderings."""
    from vagan.study.config import load_study_config
    from vagan.study.runner import run_study

    result = run_study(load_study_config(config, list(set_ or [])), out, overwrite=overwrite, device=device,
                       inputs=(config,))
    for ordering in result.orderings:
        typer.echo(f"{ordering.verdict:>12}: {ordering.claim}")
    typer.echo(f"study report: {result.report.markdown} (and {result.report.html.name}); numbers in {result.study_json}")


@app.command()
def models() -> None:
    """The pretrained models shipped with vagan: name, preset, training data, dose, budget, test metrics."""
    from vagan.inference.pretrained import shipped_models

    shipped = shipped_models()
    if not shipped:
        typer.echo("no pretrained models are shipped with this version of vagan; train one with `vagan train`")
        return
    typer.echo("name | preset | training data | dose | budget | test metrics | weights")
    for m in shipped.values():
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in m.test_metrics.items())
        typer.echo(f"{m.name} | {m.preset} | {m.training_data} | {m.dose:g} | {m.budget} | {metrics} | {m.storage}")
    notices = sorted({m.notice for m in shipped.values()})
    said = notices[0] if len(notices) == 1 else "; ".join(
        f"{', '.join(m.name for m in shipped.values() if m.notice == n)}: {n}" for n in notices)
    typer.echo(f"use a name wherever a run folder is accepted, e.g. `vagan denoise --model NAME IN OUT`; {said} "
               "(docs/model-card.md)")


@app.command()
def export(
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help="The .onnx file to write."),
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint or run folder of a trained model, or the name "
                              "of a shipped model (`vagan models`)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset, 13 to 20."),
    check: Optional[Path] = typer.Option(None, "--check", help="DICOM folder, .nii/.nii.gz or .npy whose first slice "
                                         "verifies the export (default: a synthetic 256x256 phantom slice)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUTPUT."),
) -> None:
    """Export a trained generator to ONNX (HU in, HU out, float32), verified in onnxruntime against PyTorch."""
    from vagan.inference.export import check_export, export_onnx
    from vagan.inference.model_loading import load_trained_model
    from vagan.inference.pretrained import resolve_model

    folder = resolve_model(model) or Path(model).expanduser()  # a shipped name works wherever a run folder does
    check_export(output_path, opset=opset, overwrite=overwrite, inputs=[folder, *([check] if check is not None else [])])
    check_hu = None
    if check is not None:
        from vagan.io.readers import read_volume

        check_hu = read_volume(check).hu[:1]  # validated by its reader
    report = export_onnx(load_trained_model(folder, "cpu"), output_path, opset=opset, overwrite=overwrite,
                         check_hu=check_hu)
    typer.echo(f"wrote {report.path} (opset {report.opset}; input {', '.join(report.input_names)}, "
               f"output {', '.join(report.output_names)})")
    _, h, w = report.check_shape
    typer.echo(f"onnxruntime vs PyTorch fp32 on a {h}x{w} slice: max |diff| {report.max_abs_diff_hu:.2g} HU, "
               f"RMS {report.rms_diff_hu:.2g} HU")


@app.command("train-fid-net")
def train_fid_net(
    data: Path = typer.Argument(..., help="A dataset with noise pools (`vagan simulate OUT --from DIR --set noise_pool=true`)."),
    out: Path = typer.Argument(..., help="New folder for ct-quality.safetensors and ct-quality.json."),
    patient: Optional[list[str]] = typer.Option(None, "--patient", help="A training patient (repeatable)."),
    val: Optional[list[str]] = typer.Option(None, "--val", help="A validation patient, not trained on (repeatable)."),
    thickness: str = typer.Option("any", "--thickness", help="Slice thickness of the series, e.g. 3mm, or any."),
    steps: int = typer.Option(3000, "--steps", help="Training steps of 32 patches."),
    seed: int = typer.Option(0, "--seed", help="Seed of the patches, the degradations and the initial weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an OUT that vagan wrote."),
) -> None:
    """Train the ct-quality FID feature net on real normal-dose CT: it learns the dose of inserted noise and the blur
    of a patch (docs/fid.md). Use it with `vagan evaluate --set fid_weights=OUT/ct-quality.safetensors`."""
    from vagan.evaluation.ct_quality_training import TrainingSettings, run_training

    settings = TrainingSettings(steps=steps, seed=seed)
    weights = run_training(data, out, patient or [], val or [], thickness, settings, overwrite)
    typer.echo(f"wrote {weights}")


@app.command()
def serve(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Node YAML: port, AE title, allowed peers, model, "
                                  "destinations, stable time, retries, storage limits (docs/node.md)."),
    status: bool = typer.Option(False, "--status", help="Print the node's job queue (from its spool) and exit."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Queue the failed jobs again: failed "
                                      "deliveries are sent again, a failed denoise is run again (a running node "
                                      "picks them up) and exit."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config value, e.g. --set port=11113."),
) -> None:
    """A DICOM node: receive CT series by C-STORE, denoise each with a model, send the derived series on."""
    from vagan.node import load_node_config, retry_failed_deliveries, run_node, status_lines

    if retry_failed:
        typer.echo(retry_failed_deliveries(load_node_config(config, list(set_ or []))))
        return
    if status:
        for line in status_lines(load_node_config(config, list(set_ or []))):
            typer.echo(line)
        return
    run_node(config, list(set_ or []))


def _terminated(signum: int, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporaries are removed and nothing is left half-written."""
    raise SystemExit(128 + signum)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Library warnings as one line, without the source path and code line."""
    return f"warning: {' '.join(str(message).split())}\n"


def main() -> None:
    """Console entry point."""
    from vagan.runtime import reuse_freed_memory

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.formatwarning = _one_line_warning
    signal.signal(signal.SIGTERM, _terminated)
    reuse_freed_memory()
    app()
