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


@pytest.fixture(autouse=True)
def _single_thread():
    """Tests use tiny tensors: intra-op threads only add OpenMP spinning (about 50x slower on a
    busy 2-core machine), so every test runs single-threaded and restores the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _vagan_cache(tmp_path_factory):
    """vagan's cache (exported ONNX graphs, engine probes) in one folder per test session, never ~/.cache;
    and ``--engine auto`` runs PyTorch, so that no result hangs on a timing probe. Session-wide, so it holds
    for module fixtures too; tests/inference/test_engine.py lets auto choose."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAGAN_CACHE_DIR", str(tmp_path_factory.mktemp("vagan-cache")))
        patch.setattr("vagan.inference.engine.onnxruntime_available", lambda: False)
        yield
