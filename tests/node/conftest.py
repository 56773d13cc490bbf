"""Fixtures of the node tests (helpers in tests/node_support.py)."""

from node_support import receiver, tiny_denoiser, tiny_run  # noqa: F401  (fixtures)
