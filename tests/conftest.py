"""Shared fixtures: seeded generators; tests never seed globally."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture
def rng() -> torch.Generator:
    """A seeded torch generator (CPU)."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def np_rng() -> np.random.Generator:
    """A seeded NumPy generator."""
    return np.random.default_rng(1234)
