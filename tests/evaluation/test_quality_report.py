"""`vagan evaluate` with the task-based quality section on: tables, figures, summary.json, checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import tiny_config, write_tiny_dataset

from vagan.errors import ConfigError
from vagan.evaluation.eval_config import EvaluationConfig
from vagan.evaluation.metrics import PatchSpec
from vagan.evaluation.quality_run import FULL_DOSE
from vagan.evaluation.runner import evaluate
from vagan.physics.simulate import SimulationConfig
from vagan.training.trainer import train

CHEAP_SCANNER = SimulationConfig(n_views=180)
QUALITY = {"enabled": True, "realisations": 6, "lesion_diameters_mm": [5, 10], "lesion_contrasts_hu": [10, 40],
           "rod_contrasts_hu": [100], "channels": 2, "size": 256}


def _dataset(root: Path, manifest: bool = True) -> Path:
    write_tiny_dataset(root)
    if manifest:
        (root / "manifest.json").write_text(json.dumps({
            "kind": "vagan-paired-dataset", "source": "phantom", "spec": {"dose": 0.25},
            "pixel_spacing_mm": 1.4, "simulation": CHEAP_SCANNER.to_dict()}))
    return root


def _config(root: Path, methods: list[str], **quality) -> EvaluationConfig:
    return EvaluationConfig.from_dict({
        "methods": methods, "data_root": str(root), "split": {"train": ["T000"], "test": ["T002"]},
        "patches": PatchSpec(size=32), "fid_net": "none", "timing_slices": 0, "figure_slices": 0,
        "quality": {**QUALITY, **quality}})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    base = tmp_path_factory.mktemp("quality")
    root = _dataset(base / "data")
    train(tiny_config("g_psnr", "stages.*.max_steps=1", f"data.root={root}",
                      "data.split={train: [T000], val: [T001], test: [T002]}", "data.val_slices=1"), base / "g")
    return evaluate(_config(root, ["ldct", str(base / "g")]), base / "out", progress=False)


def test_every_method_and_the_full_dose_reference_are_assessed(evaluated):
    record = json.loads(evaluated.summary_json.read_text())["quality"]
    assert list(record["methods"]) == [FULL_DOSE, "LDCT", "g_psnr/psnr"]
    assert record["dose"] == 0.25 and record["pixel_mm"] == 1.4 and record["size"] == 256
    full, low = record["methods"][FULL_DOSE], record["methods"]["LDCT"]
    # noise std scales as 1/sqrt(dose): quarter dose doubles it
    assert low["noise_std_hu"] / full["noise_std_hu"] == pytest.approx(2.0, rel=0.15)
    # a stronger lesion is easier to see, and full dose beats quarter dose on it
    strong, weak = "10 mm / 40 HU", "5 mm / 10 HU"
    for method in (full, low):
        assert method["detectability"][strong]["cho"]["d_prime"]["estimate"] > \
            method["detectability"][weak]["cho"]["d_prime"]["estimate"]
    assert full["detectability"][strong]["cho"]["d_prime"]["estimate"] > \
        low["detectability"][strong]["cho"]["d_prime"]["estimate"]
    assert set(low["ct_bias_hu"]) == {"fat", "muscle", "liver", "blood", "bone"}


def test_the_report_has_the_quality_tables_and_figures(evaluated):
    text = evaluated.report.markdown.read_text()
    for title in ("Task-based image quality", "Noise and resolution", "CT-number bias", "d' of the CHO",
                  "NPW with eye filter"):
        assert title in text
    names = {p.name for p in evaluated.figures}
    assert {"quality_nps.png", "quality_ttf.png", "quality_detectability.png"} <= names


def test_unknown_dose_too_few_realisations_and_bad_rois_are_refused_before_any_work(tmp_path):
    root = _dataset(tmp_path / "data", manifest=False)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="quality.dose"):
        evaluate(_config(root, ["ldct"]), out, progress=False)
    # without a manifest the phantom takes the DICOM's 0.7 mm pixels: 256 of them are too small a field
    with pytest.raises(ConfigError, match="quality: the 161 x 117 mm body holds"):
        evaluate(_config(root, ["ldct"], dose=0.25), out, progress=False)
    with pytest.raises(ConfigError, match="quality.realisations: 4 is too few.*give at least"):
        evaluate(_config(root, ["ldct"], dose=0.25, pixel_mm=1.4, realisations=4, channels=10,
                         lesion_diameters_mm=[3, 5, 7, 10], lesion_contrasts_hu=[5, 10, 20, 30]), out, progress=False)
    with pytest.raises(ConfigError, match=r"quality.rois\[0\]: \(40, 40\) with side 16 px lies outside the 48x48"):
        evaluate(_config(root, ["ldct"], phantom=False, pixel_mm=1.4, rois=[[40, 40]]), out, progress=False)
    with pytest.raises(ConfigError, match=r"quality.rois\[0\]: \(0, 0\) .* leaves the body's soft tissue"):
        evaluate(_config(root, ["ldct"], phantom=False, pixel_mm=1.4, rois=[[0, 0]]), out, progress=False)
    assert not out.exists()


def test_do_no_harm_on_full_dose_scans_tells_identity_from_offset_and_blur(tmp_path):
    """quality.full_dose_input: an identity leaves the full-dose scans as they are (TTF ratio 1, shift 0,
    meets the bounds); +5 HU is caught as a shift; a strong blur as lost TTF and removed noise."""
    from types import SimpleNamespace

    import numpy as np
    from scipy import ndimage

    from vagan.evaluation.eval_config import MethodSpec
    from vagan.evaluation.inputs import Method
    from vagan.evaluation.quality_run import run_phantom
    from vagan.evaluation.report_quality import full_dose_table, quality_record
    from vagan.quality.setup import quality_setup

    root = _dataset(tmp_path / "data")
    cfg = _config(root, ["ldct"], full_dose_input=True, realisations=4, channels=1, lesion_diameters_mm=[10],
                  lesion_contrasts_hu=[40]).quality  # one lesion type: the observers are not what is tested here
    setup = quality_setup(cfg, root, 256)

    def method(name, fn):
        return Method(name, MethodSpec(name, "bm3d:1"), denoiser=lambda hu: SimpleNamespace(hu=fn(hu)))

    methods = [method("identity", lambda hu: hu.copy()), method("offset", lambda hu: hu + 5.0),
               method("blur", lambda hu: ndimage.gaussian_filter(hu, (0, 2.5, 2.5)))]
    outcome = run_phantom(cfg, setup, methods, torch.device("cpu"), progress=False)
    effects = outcome.on_full_dose
    assert set(effects) == {"identity", "offset", "blur"}
    assert all(abs(i.estimate) < 1e-6 for i in effects["identity"].shift_hu.values())
    assert all(i.estimate == pytest.approx(5.0, abs=1e-3) for i in effects["offset"].shift_hu.values())
    full_noise = outcome.results[FULL_DOSE].noise_std_hu
    assert effects["identity"].quality.noise_std_hu == pytest.approx(full_noise, rel=1e-4)
    assert effects["blur"].quality.noise_std_hu < 0.5 * full_noise
    rows = {row[0]: row for row in full_dose_table(outcome).rows}
    assert rows["identity"][-1] == "yes" and rows["identity"][3] == "1.00"
    assert rows["offset"][-1] == "no" and rows["blur"][-1] == "no"
    assert float(rows["blur"][3]) < 0.9
    record = quality_record(outcome)["on_full_dose"]
    assert record["offset"]["shift_hu"]["muscle"]["estimate"] == pytest.approx(5.0, abs=1e-3)
