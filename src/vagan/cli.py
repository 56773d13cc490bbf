"""Command line: thin wrappers that parse arguments and call the library.

User mistakes raise :class:`vagan.errors.VaganError`; :func:`main` turns them into one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer

from vagan.errors import VaganError

app = typer.Typer(
    name="vagan",
    help="Visual Attention GAN for low-dose CT: simulate, train, denoise, evaluate, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
