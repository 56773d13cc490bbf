"""DICOM in -> DICOM out with a trained model, on a real scanner slice and a simulated series."""

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from support import tiny_config, tiny_data
from typer.testing import CliRunner

from vagan.cli import app
from vagan.inference.denoise import NetworkDenoiser
from vagan.inference.files import DenoiseJob, denoise_path
from vagan.inference.model_loading import load_trained_model
from vagan.io.dicom import read_dicom_series, write_dicom_series
from vagan.training.trainer import train

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "ga_psnr"
    train(tiny_config("ga_psnr", "stages.*.max_steps=2"), run, data=tiny_data())
    return run


@pytest.fixture
def ct_small(tmp_path):
    folder = tmp_path / "ct_small"
    folder.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), folder / "CT_small.dcm")
    return folder


def test_denoise_real_slice_writes_a_derived_series(trained_run, ct_small, tmp_path):
    before = {p.name: p.read_bytes() for p in ct_small.iterdir()}
    out = tmp_path / "denoised"
    result = runner.invoke(app, ["denoise", "--model", str(trained_run), str(ct_small), str(out),
                                 "--attention-out", str(tmp_path / "attention"), "--device", "cpu",
                                 "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    source = pydicom.dcmread(next(ct_small.iterdir()))
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 1
    ds = pydicom.dcmread(files[0])
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.SOPInstanceUID != source.SOPInstanceUID
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    assert list(ds.ImagePositionPatient) == list(source.ImagePositionPatient)
    assert list(ds.PixelSpacing) == list(source.PixelSpacing)
    assert ds.ImageType[0] == "DERIVED" and "ga_psnr" in ds.SeriesDescription
    # the written HU are the model's output for the input HU
    model = load_trained_model(trained_run)
    expected = NetworkDenoiser(model)(read_dicom_series(ct_small).hu).hu
    assert np.abs(read_dicom_series(out).hu - expected).max() <= 1.0
    maps = np.load(tmp_path / "attention" / "attention.npy")
    assert maps.shape == (1, 128, 128) and 0.0 <= maps.min() and maps.max() <= 1.0
    assert {p.name: p.read_bytes() for p in ct_small.iterdir()} == before  # input untouched


def test_existing_output_is_refused_and_kept(trained_run, ct_small, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = runner.invoke(app, ["denoise", "--model", str(trained_run), str(ct_small), str(out)])
    assert result.exit_code == 2
    assert (out / "keep.txt").read_text() == "precious"


def test_multislice_series_other_size_and_dcmdump(trained_run, tmp_path):
    rng = np.random.default_rng(0)
    hu = np.full((3, 40, 56), -1000.0, np.float32)
    hu[:, 5:-5, 5:-5] = 40.0 + rng.normal(0, 30, (3, 30, 46))
    series = write_dicom_series(hu, tmp_path / "series", series_description="LDCT", patient_id="P1",
                                pixel_spacing_mm=(0.8, 0.8), slice_thickness_mm=2.0)
    out = denoise_path(NetworkDenoiser(load_trained_model(trained_run), batch_size=2),
                       DenoiseJob.checked(series, tmp_path / "den"), progress=False)
    volume = read_dicom_series(out.output)
    assert volume.hu.shape == hu.shape
    assert np.allclose(volume.slice_positions_mm, read_dicom_series(series).slice_positions_mm)
    if shutil.which("dcmdump"):
        for path in sorted(out.output.glob("*.dcm")):
            proc = subprocess.run(["dcmdump", "+E", str(path)], capture_output=True, text=True)
            assert proc.returncode == 0 and "E:" not in proc.stderr, proc.stderr


def test_nifti_and_npy_round_trip_kinds(trained_run, tmp_path):
    hu = np.random.default_rng(1).normal(0, 20, (2, 32, 32)).astype(np.float32)
    np.save(tmp_path / "in.npy", hu)
    denoiser = NetworkDenoiser(load_trained_model(trained_run))
    report = denoise_path(denoiser, DenoiseJob.checked(tmp_path / "in.npy", tmp_path / "out.npy"), progress=False)
    assert np.load(report.output).shape == hu.shape
    np.save(tmp_path / "one.npy", hu[0])  # a 2-D slice comes back 2-D (issue 23 item 10)
    report = denoise_path(denoiser, DenoiseJob.checked(tmp_path / "one.npy", tmp_path / "one_out.npy"), progress=False)
    assert np.load(report.output).shape == hu[0].shape
    result = runner.invoke(app, ["denoise", "--model", str(trained_run), str(tmp_path / "in.npy"),
                                 str(tmp_path / "out.nii.gz")])
    assert result.exit_code == 2 and "same kind" in result.output


def test_checkpoint_that_does_not_fit_and_not_a_checkpoint(trained_run, ct_small, tmp_path):
    import json

    ckpt = trained_run / "checkpoints" / "psnr" / "final"
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    meta = json.loads((bad / "meta.json").read_text())
    meta["config"]["model"]["generator_features"] = 16
    (bad / "meta.json").write_text(json.dumps(meta))
    result = runner.invoke(app, ["denoise", "--model", str(bad), str(ct_small), str(tmp_path / "o1")])
    assert result.exit_code == 2 and "do not fit" in result.output
    (tmp_path / "not_a_model").mkdir()
    result = runner.invoke(app, ["denoise", "--model", str(tmp_path / "not_a_model"), str(ct_small),
                                 str(tmp_path / "o2")])
    assert result.exit_code == 2 and "neither a vagan checkpoint" in result.output
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_non_ct_input_is_a_clear_error(trained_run, ct_small, tmp_path):
    path = next(ct_small.iterdir())
    ds = pydicom.dcmread(path)
    ds.Modality = "MR"
    ds.save_as(path)
    result = runner.invoke(app, ["denoise", "--model", str(trained_run), str(ct_small), str(tmp_path / "o")])
    assert result.exit_code == 2 and "MR" in result.output
    assert not (tmp_path / "o").exists()


def test_pixels_outside_the_network_range_pass_through(trained_run):
    denoiser = NetworkDenoiser(load_trained_model(trained_run))
    hu = np.full((1, 24, 24), 40.0, np.float32)
    hu[0, :4] = -3024.0  # scanner padding
    hu[0, 10, 10] = 5000.0  # metal
    out = denoiser(hu).hu
    assert (out[0, :4] == -3024.0).all() and out[0, 10, 10] == 5000.0
    inside = np.ones_like(hu, bool)
    inside[0, :4] = False
    inside[0, 10, 10] = False
    assert out[inside].min() >= -1024.0 and out[inside].max() <= 3072.0


def _denoise(trained_run, src, out, *extra):
    return runner.invoke(app, ["denoise", "--model", str(trained_run), str(src), str(out), "--device", "cpu",
                               "--precision", "fp32", *extra])


def test_overwrite_never_deletes_a_folder_vagan_did_not_write(trained_run, ct_small, tmp_path):
    user = tmp_path / "u"
    user.mkdir()
    (user / "thesis.docx").write_text("years of work")
    for extra in ([], ["--attention-out", str(user)]):
        target = user if not extra else tmp_path / "series"
        result = _denoise(trained_run, ct_small, target, "--overwrite", *extra)
        assert result.exit_code == 2 and "not written by vagan" in result.output, result.output
        assert "thesis.docx" in result.output and (user / "thesis.docx").read_text() == "years of work"
    assert not (tmp_path / "series").exists()  # refused before anything was written
    # a series vagan wrote is replaced with --overwrite
    assert _denoise(trained_run, ct_small, tmp_path / "mine").exit_code == 0
    again = _denoise(trained_run, ct_small, tmp_path / "mine", "--overwrite")
    assert again.exit_code == 0, again.output
    assert len(list((tmp_path / "mine").glob("*.dcm"))) == 1


def test_the_model_cannot_be_deleted_by_its_own_run(trained_run, ct_small, tmp_path):
    before = sorted(p.relative_to(trained_run) for p in trained_run.rglob("*"))
    for out in (trained_run, trained_run / "checkpoints", trained_run.parent):
        result = _denoise(trained_run, ct_small, out, "--overwrite")
        assert result.exit_code == 2 and "overlaps the input" in result.output, result.output
    assert sorted(p.relative_to(trained_run) for p in trained_run.rglob("*")) == before


def test_attention_out_equal_to_output_is_refused_before_work(trained_run, ct_small, tmp_path):
    out = tmp_path / "out"
    for attention in (out, out / "maps"):
        result = _denoise(trained_run, ct_small, out, "--attention-out", str(attention), "--overwrite")
        assert result.exit_code == 2 and "overlap" in result.output and result.output.count("\n") == 1
    assert not out.exists()


def test_attention_out_of_a_model_without_attention_is_an_error(ct_small, tmp_path):
    result = runner.invoke(app, ["denoise", "--model", "bm3d", str(ct_small), str(tmp_path / "o"),
                                 "--attention-out", str(tmp_path / "maps")])
    assert result.exit_code == 2 and "no attention block" in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "maps").exists()


def test_a_read_only_place_is_one_error_before_work(trained_run, ct_small, tmp_path, monkeypatch):
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path / "ro") else real_access(p, mode))
    (tmp_path / "ro").mkdir()
    result = _denoise(trained_run, ct_small, tmp_path / "ro" / "out", "--attention-out", str(tmp_path / "maps"))
    assert result.exit_code == 2 and "no permission to write" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "maps").exists()


def test_skipped_files_are_listed_in_the_summary(trained_run, ct_small, tmp_path):
    (ct_small / "notes.txt").write_text("not a slice")
    result = _denoise(trained_run, ct_small, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "skipped 1 file(s)" in result.output and "not DICOM: 1 file(s) (notes.txt)" in result.output


def test_two_thousand_junk_files_are_summarised_not_listed(trained_run, ct_small, tmp_path):
    """Issue 23 item 10: 2,000 junk files beside a series printed 2,000 lines; now one per reason."""
    for i in range(2000):
        (ct_small / f"junk{i:04d}.txt").write_text("x")
    result = _denoise(trained_run, ct_small, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) < 15, result.output[:2000]
    assert "not DICOM: 2000 file(s) (junk0000.txt, junk0001.txt, junk0002.txt and 1997 more)" in result.output


def test_a_cd_layout_points_at_its_series_folders(trained_run, ct_small, tmp_path):
    """Issue 23 item 10: a DICOMDIR with the series in sub-folders said only "no DICOM CT images found"."""
    import shutil

    cd = tmp_path / "cd"
    shutil.copytree(ct_small, cd / "DICOM" / "ST000000" / "SE000000")
    (cd / "DICOMDIR").write_bytes(b"\0" * 132)
    result = _denoise(trained_run, cd, tmp_path / "out")
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "holds a DICOMDIR" in lines[0] and str(cd / "DICOM" / "ST000000" / "SE000000") in lines[0]


def test_a_checkpoint_given_as_model_protects_its_whole_run(trained_run, ct_small, tmp_path):
    checkpoint = trained_run / "checkpoints" / "psnr" / "final"
    for out in (trained_run / "checkpoints" / "den", trained_run / "logs" / "den"):
        result = runner.invoke(app, ["denoise", "-m", str(checkpoint), str(ct_small), str(out)])
        assert result.exit_code == 2 and "overlaps the input" in result.output, result.output
        assert not out.exists()


def test_bm3d_is_named_as_in_evaluate(ct_small, tmp_path):
    fixed = runner.invoke(app, ["denoise", "--model", "bm3d:30", str(ct_small), str(tmp_path / "fixed")])
    assert fixed.exit_code == 0, fixed.output
    for bad, message in (("bm3d:-4", "positive number of HU"), ("bm3d:abc", "bm3d:SIGMA_HU"),
                         ("ldct", "not a denoiser"), ("bm4d", "did you mean 'bm3d'")):
        result = runner.invoke(app, ["denoise", "--model", bad, str(ct_small), str(tmp_path / "out")])
        assert result.exit_code == 2 and message in result.output, (bad, result.output)
        assert not (tmp_path / "out").exists()


def test_denoise_refuses_to_write_inside_a_vagan_dataset(tmp_path):
    """Issue 23 item 9: --overwrite into a series folder of a simulated dataset replaced it, and the
    dataset then failed to train."""
    data = tmp_path / "data"
    result = runner.invoke(app, ["simulate", str(data), "--set", "patients=1", "--set", "slices_per_patient=1",
                                 "--set", "size=64", "--set", "simulation.n_views=90", "--set", "simulation.n_detectors=96",
                                 "--set", "simulation.detector_spacing_mm=10.0"])
    assert result.exit_code == 0, result.output
    series = data / "PH001" / "quarter_1mm"
    before = sorted((p.name, p.read_bytes()) for p in series.iterdir())
    for target in (series, data / "PH001" / "denoised"):
        result = runner.invoke(app, ["denoise", "--model", "bm3d:20", str(data / "PH001" / "full_1mm"), str(target),
                                     "--overwrite"])
        lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert result.exit_code == 2 and len(lines) == 1 and "inside the vagan paired LDCT/NDCT dataset" in lines[0]
    assert sorted((p.name, p.read_bytes()) for p in series.iterdir()) == before
    assert not (data / "PH001" / "denoised").exists()


def test_a_pixel_size_far_outside_the_training_range_warns_once(ct_small, tmp_path, caplog):
    """The run records its patches' pixel sizes; CT_small (0.66 mm) through a model trained on 1.5-2 mm
    warns once, naming both; through one trained on 0.6-0.8 mm it does not."""
    from dataclasses import replace

    from vagan.training.checkpoint import read_meta

    coarse, fine = tmp_path / "coarse", tmp_path / "fine"
    train(tiny_config("g_psnr", "stages.*.max_steps=1"), coarse, data=replace(tiny_data(), pixel_mm=(1.5, 2.0)))
    train(tiny_config("g_psnr", "stages.*.max_steps=1"), fine, data=replace(tiny_data(), pixel_mm=(0.6, 0.8)))
    assert read_meta(coarse / "checkpoints/psnr/final")["training_data"] == {"pixel_mm": [1.5, 2.0]}
    for run, expected in ((coarse, 1), (fine, 0)):
        caplog.clear()
        job = DenoiseJob.checked(ct_small, tmp_path / f"out-{run.name}")
        denoise_path(NetworkDenoiser(load_trained_model(run)), job, progress=False)
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "trained on" in r.getMessage()]
        assert len(warned) == expected, warned
        if warned:
            assert "0.66 mm pixels" in warned[0] and "1.50-2.00 mm" in warned[0]


def test_training_records_the_pixel_sizes_its_patches_have(tmp_path):
    """load_data: the data's own pixel sizes, or the resampling range when data.resample_mm is set."""
    from support import write_tiny_dataset

    from vagan.training.trainer import load_data

    root = write_tiny_dataset(tmp_path / "data", size=96)
    split = "data.split={train: [T000, T001], val: [T002], test: []}"
    own = load_data(tiny_config("g_psnr", f"data.root={root}", split))
    assert own.pixel_mm == pytest.approx((0.7, 0.7), abs=1e-6)
    wider = load_data(tiny_config("g_psnr", f"data.root={root}", split, "data.resample_mm=[0.6, 1.1]"))
    assert wider.pixel_mm == (0.6, 1.1)
    from vagan.errors import ConfigError

    with pytest.raises(ConfigError, match="smaller than patch"):
        load_data(tiny_config("g_psnr", f"data.root={root}", split, "data.resample_mm=[0.6, 3.0]"))


def test_a_full_disk_is_named_before_the_work_and_after_it(trained_run, ct_small, tmp_path, monkeypatch):
    """Issue 23 item 4: a full disk printed `error: oserror` after all the work. Too little free space
    for the output is now refused before any work; a disk that fills during the write reads "no space
    left on device" however the library raised it."""
    import errno
    from collections import namedtuple

    from vagan import cli
    from vagan.io import atomic

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    out = tmp_path / "denoised"
    result = _denoise(trained_run, ct_small, out)
    assert result.exit_code == 2 and not out.exists()
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no space left on device:") and "MB free" in lines[0]
    assert cli._os_error(OSError(errno.ENOSPC, "No space left on device", "/d/x.dcm")) == \
        "no space left on device: /d/x.dcm"
    assert cli._os_error(OSError("Not enough free space to write 4096 bytes")).startswith("no space left on device")
    assert cli._os_error(OSError(errno.EIO, "Input/output error", "/d/y")) == "input/output error: /d/y"


def test_an_output_made_by_a_concurrent_denoise_is_named_as_such_and_kept(trained_run, ct_small, tmp_path, monkeypatch):
    """Issue 23 item 10: of two denoises into one output, the loser said "exists; pass --overwrite".
    It now says the documented "created by another process while this one ran", and the winner's
    output stays as it was."""
    from vagan.inference import denoise as denoise_module
    from vagan.io.dicom import write_dicom_series

    out = tmp_path / "out"
    real_call = denoise_module.NetworkDenoiser.__call__

    def racing(self, hu, *args, **kwargs):  # the other process finishes first, during this one's work
        write_dicom_series(np.zeros((1, 16, 16), np.float32), out, series_description="winner")
        return real_call(self, hu, *args, **kwargs)

    monkeypatch.setattr(denoise_module.NetworkDenoiser, "__call__", racing)
    result = _denoise(trained_run, ct_small, out)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "created by another process while this one ran" in lines[0]
    assert read_dicom_series(out).hu.shape == (1, 16, 16)  # the winner's output is kept
