"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


MACHINE_FAULTS = (PermissionError, MemoryError)
"""Failures of the machine, not of a file's content: re-raised before any broad ``except`` that reports
damaged input, so that they are never called corrupt data."""


class VaganError(Exception):
    """A problem with the user's input, files or configuration (not a bug in vagan).

    The message must name the offending file/key/value, say what was expected and,
    where possible, how to fix it.
    """

    exit_code = 2


class InputDataError(VaganError):
    """Unreadable, corrupt, inconsistent or non-CT input data."""


class ConfigError(VaganError):
    """Unknown key, wrong type or invalid value in a configuration file."""


class CheckpointError(VaganError):
    """A checkpoint that is corrupt, of another model/preset or another format version."""


class OutputError(VaganError):
    """An output that cannot be written: it overlaps an input or another output, or its folder is not writable."""


class MissingResourceError(VaganError):
    """An optional package or a weights file that this machine lacks; vagan never downloads at run time,
    so the message says how to supply it."""


class ExportError(VaganError):
    """A model that could not be exported, or whose export disagrees with PyTorch."""


class TrainingDivergedError(VaganError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


class MethodOutputError(VaganError):
    """A denoising method returned NaN or infinite values."""


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite inside a training step (the trainer turns it into
    :class:`TrainingDivergedError`)."""


class OutputExistsError(OutputError):
    """An output path exists and may not be replaced: no --overwrite, or it holds data vagan did not write."""
