import json

import pytest
import torch

from vagan.errors import CheckpointError
from vagan.training.checkpoint import (
    load_checkpoint,
    load_module_state,
    save_checkpoint,
)


def _restamp(path):
    """Record the files' current SHA-256 in meta.json: a crafted checkpoint whose meta matches its
    damaged files, so the checks behind the checksum are reached."""
    from vagan.io.checksum import file_sha256

    meta = json.loads((path / "meta.json").read_text())
    meta["checksums"] = {name: file_sha256(path / name) for name in meta["checksums"]}
    (path / "meta.json").write_text(json.dumps(meta))


def _net(width=4):
    return torch.nn.Sequential(torch.nn.Conv2d(1, width, 3), torch.nn.ReLU(), torch.nn.Conv2d(width, 1, 3))


def test_round_trip_keeps_weights_meta_and_state(tmp_path):
    net = _net()
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 1, 8, 8)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck", {"generator": net}, {"preset": "g_psnr", "progress": {"step": 3}},
                           {"opt_g": opt.state_dict(), "rng": torch.Generator().manual_seed(5).get_state()})
    ckpt = load_checkpoint(path, with_state=True, expect_preset="g_psnr")
    fresh = _net()
    load_module_state(fresh, ckpt, "generator")
    for a, b in zip(net.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert ckpt.meta["progress"]["step"] == 3
    opt2 = torch.optim.Adam(fresh.parameters())
    opt2.load_state_dict(ckpt.state["opt_g"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_overwriting_a_checkpoint_is_atomic(tmp_path):
    save_checkpoint(tmp_path / "ck", {"generator": _net()}, {"preset": "a"})
    save_checkpoint(tmp_path / "ck", {"generator": _net()}, {"preset": "b"})
    assert load_checkpoint(tmp_path / "ck").preset == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_wrong_preset_version_and_corruption_are_clear_errors(tmp_path):
    path = save_checkpoint(tmp_path / "ck", {"generator": _net()}, {"preset": "vagan"})
    with pytest.raises(CheckpointError, match="holds preset 'vagan', not 'g_psnr'"):
        load_checkpoint(path, expect_preset="g_psnr")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps(meta | {"version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)
    (path / "meta.json").write_text(json.dumps(meta))
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    _restamp(path)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")


def test_checkpoint_of_another_architecture_does_not_fit(tmp_path):
    path = save_checkpoint(tmp_path / "ck", {"generator": _net(width=4)}, {"preset": "x"})
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_module_state(_net(width=8), load_checkpoint(path), "generator")


def test_state_file_with_code_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "ck", {"generator": _net()}, {"preset": "x"}, {"opt_g": {}})

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"opt_g": Evil()}, path / "state.pt")
    _restamp(path)
    with pytest.raises(CheckpointError, match="holds more than tensors"):
        load_checkpoint(path, with_state=True)


def test_the_weights_file_has_the_mode_of_every_other_output_file(tmp_path):
    """safetensors writes 0600; a checkpoint's files all get 0666 less the umask, as meta.json does."""
    import os
    import stat

    path = save_checkpoint(tmp_path / "ck", {"generator": _net()}, {"preset": "g_psnr"})
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in path.iterdir()}
    assert modes["model.safetensors"] == modes["meta.json"], modes


def test_nan_weights_are_refused_at_load_naming_the_file(tmp_path):
    """Issue 23 item 6: NaN weights were found only after denoising, and the message blamed the input."""
    from safetensors.torch import load_file, save_file

    path = save_checkpoint(tmp_path / "ck", {"generator": _net()}, {"preset": "g_psnr"})
    weights = load_file(str(path / "model.safetensors"))
    first = sorted(weights)[0]
    weights[first] = weights[first].clone()
    weights[first].view(-1)[0] = float("nan")
    save_file(weights, str(path / "model.safetensors"))
    _restamp(path)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*NaN or infinite.*" + first.replace(".", r"\.")):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt"])
def test_a_flipped_byte_in_a_saved_file_is_refused_at_load(tmp_path, name):
    """Issue 23 item 7: a flipped byte in a run's tensor data loaded silently (up to 4,096 HU off);
    meta.json now records each file's SHA-256 and load checks it. A checkpoint that records none
    (written before the checksums) still loads."""
    path = save_checkpoint(tmp_path / "ck", {"generator": _net()}, {"preset": "g_psnr"}, {"opt_g": {}})
    meta = json.loads((path / "meta.json").read_text())
    assert set(meta["checksums"]) == {"model.safetensors", "state.pt"}
    load_checkpoint(path, with_state=True)
    data = bytearray((path / name).read_bytes())
    data[-7] ^= 0x10  # inside the tensor data, not the header
    (path / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{name} does not match the SHA-256"):
        load_checkpoint(path, with_state=True)
    del meta["checksums"]
    (path / "meta.json").write_text(json.dumps(meta))
    load_checkpoint(path, with_state=name == "model.safetensors")  # an older checkpoint: no sums to check
