"""Command line: thin wrappers that parse arguments and call the library.

User mistakes raise :class:`vagan.errors.VaganError`; :func:`main` turns them into one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from vagan.errors import VaganError

app = typer.Typer(
    name="vagan",
    help="Visual Attention GAN for low-dose CT: simulate, train, denoise, evaluate, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the vagan version and exit.")) -> None:
    """Visual Attention GAN for low-dose CT: simulate, train, denoise, evaluate, report."""
    if version:
        from vagan import __version__

        typer.echo(__version__)
        raise typer.Exit()


Overrides = typer.Option(None, "--set", help="Override a config value, e.g. --set stages.*.max_steps=50 (repeatable).")


@app.command()
def train(
    config: str = typer.Option(..., "--config", "-c", help="Preset name (vagan, g_psnr, ...) or a YAML config file."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoints, logs and the config are written here."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset root (Mayo 2016 layout); same as --set data.root=DIR."),
    stage: Optional[list[str]] = typer.Option(None, "--stage", help="Run only this stage (repeatable); default: all."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing run in --out and start again."),
    vgg_weights: Optional[Path] = typer.Option(None, "--vgg-weights", help="torchvision VGG19 ImageNet weights (.pth) for L_Pcep."),
    set_: Optional[list[str]] = Overrides,
) -> None:
    """Train a preset (both stages, or the ones named) on paired LDCT/NDCT data."""
    from vagan.training.config import load_config
    from vagan.training.trainer import train as run_training

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.root={data}")
    if vgg_weights is not None:
        overrides.append(f"train.vgg_weights={vgg_weights}")
    cfg = load_config(config, overrides)
    final = run_training(cfg, out, stages=stage, resume=resume, overwrite=overwrite)
    typer.echo(f"finished: {final}")


def main() -> None:
    """Console entry point."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except VaganError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
