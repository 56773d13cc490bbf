"""data.mix: further training sources (e.g. phantom pairs beside real ones) at set shares of the patches."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from support import tiny_config, tiny_pairs, write_tiny_dataset

from vagan.data.patches import MixedPatchDataset, PatchPairDataset, SlicePair
from vagan.errors import ConfigError, InputDataError
from vagan.training.trainer import load_data, train

SPLIT = "data.split={train: [T000, T001], val: [T002]}"


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("mix")
    real = write_tiny_dataset(base / "real", patients=3, slices=4)
    other = write_tiny_dataset(base / "phantom", patients=2, slices=3, size=56)  # another slice size: its own pairs
    return real, other


def _config(real: Path, *extra: str):
    return tiny_config("g_psnr", f"data.root={real}", SPLIT, "data.thickness=1mm", "data.patches_per_slice=10",
                       *extra)


def _pooled(n: int, seed: int) -> list[SlicePair]:
    """Tiny pairs with unit noise images, so that each epoch mixes fresh noise (data.train_doses)."""
    rng = np.random.default_rng(seed)
    return [dataclasses.replace(p, noise=rng.normal(0, 10, (2, 2, *p.ndct.shape)).astype(np.float32))
            for p in tiny_pairs(n, seed=seed)]


def test_mixed_index_maps_to_each_part_with_its_own_epoch():
    a = PatchPairDataset(_pooled(2, 0), 32, 3, seed=0, doses=(0.25, 0.5))
    b = PatchPairDataset(_pooled(3, 1), 32, 2, seed=1, doses=(0.1,))
    mixed = MixedPatchDataset([a, b])
    assert len(mixed) == 12 and mixed.shares() == [0.5, 0.5]
    for epoch in (0, 2):
        for i in range(len(mixed)):
            part, local = (a, i) if i < 6 else (b, i - 6)
            got, want = mixed[i + epoch * 12], part[local + epoch * len(part)]
            assert all(torch.equal(got[k], want[k]) for k in want)
    for i in (0, 7):  # fresh noise: the same patch of another epoch has other noise, the same NDCT
        first, third = mixed[i], mixed[i + 2 * 12]
        assert torch.equal(first["ndct"], third["ndct"]) and not torch.equal(first["ldct"], third["ldct"])
    assert not torch.equal(mixed[0]["ndct"], mixed[6]["ndct"])


def test_each_source_gets_its_share_of_the_patches(roots):
    real, other = roots
    data = load_data(_config(real, f"data.mix=[{{root: {other}, share: 0.4}}]"))
    assert isinstance(data.train, MixedPatchDataset)
    main, mixed = data.train.parts
    assert len(main) == 2 * 4 * 10  # the two training patients of data.root
    assert {p.patient for p in mixed.pairs} == {"T000", "T001"} and len(mixed.pairs) == 6  # every patient of the mix
    assert {p.ndct.shape for p in mixed.pairs} == {(56, 56)}
    assert data.train.shares()[1] == pytest.approx(0.4, abs=0.05)
    assert {p.patient for p in data.val} == {"T002"}  # validation stays on data.root


def test_listed_patients_only(roots):
    real, other = roots
    data = load_data(_config(real, f"data.mix=[{{root: {other}, share: 0.2, patients: [T001]}}]"))
    assert {p.patient for p in data.train.parts[1].pairs} == {"T001"}
    assert data.train.shares()[1] == pytest.approx(0.2, abs=0.05)


@pytest.mark.parametrize(("mix", "error", "message"), [
    ("[{root: OTHER, share: 0.6}, {root: OTHER, share: 0.5}]", ConfigError, "add up to 1.1"),
    ("[{root: OTHER, share: 0}]", ConfigError, "share"),
    ("[{share: 0.3}]", ConfigError, "root"),
    ("[{root: OTHER, share: 0.3, patients: [NOPE]}]", InputDataError, "NOPE"),
    ("[{root: MISSING, share: 0.3}]", InputDataError, "not a folder"),
    ("[{root: OTHER, share: 0.3, train_doses: [0.25]}]", InputDataError, "noise pool"),
    ("[{root: REAL, share: 0.3}]", ConfigError, "overlaps data.root"),
    ("[{root: OTHER, share: 0.3}]", ConfigError, "validation or test"),
])
def test_bad_mix_is_one_clear_error(roots, tmp_path, mix, error, message):
    real, other = roots
    mix = mix.replace("OTHER", str(other)).replace("MISSING", str(tmp_path / "missing")).replace("REAL", str(real))
    split = "data.split={train: [T000], val: [T001]}" if message == "validation or test" else SPLIT  # T001 in both
    with pytest.raises(error, match=message):
        load_data(_config(real, f"data.mix={mix}", split))


def test_training_on_a_mix_resumes_to_the_weights_of_an_uninterrupted_run(roots, tmp_path):
    """Each part keeps its own epoch and fresh noise, so an interrupted mixed run resumes exactly."""
    from safetensors.torch import load_file

    real, other = roots
    mix = f"data.mix=[{{root: {other}, share: 0.5}}]"
    straight = _config(real, mix, "stages.*.max_steps=4")
    train(straight, tmp_path / "a")
    train(_config(real, mix, "stages.*.max_steps=2"), tmp_path / "b")
    train(straight, tmp_path / "b", resume=True)
    a, b = (load_file(tmp_path / run / "checkpoints/psnr/final/model.safetensors") for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)
    alone = load_file(train(_config(real, "stages.*.max_steps=4"), tmp_path / "c") / "model.safetensors")
    assert any(not torch.equal(a[k], alone[k]) for k in a)  # the mixed-in source really took part


def test_a_source_too_big_for_its_share_is_warned_about(roots, caplog):
    real, other = roots
    with caplog.at_level("WARNING"):
        data = load_data(_config(real, f"data.mix=[{{root: {other}, share: 0.01}}]"))
    assert data.train.shares()[1] > 0.06  # one patch per slice is already 7%, not 1%
    assert any("data.mix[0] gets" in r.getMessage() for r in caplog.records)
