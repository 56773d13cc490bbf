"""TrainedModel.label: the model's user-facing name, which names a derived DICOM series
(``'CT Body 3.0 [vagan g_psnr-phantom512]'``, issue 22 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vagan.inference.model_loading import TrainedModel, load_trained_model
from vagan.inference.pretrained import resolve_model, shipped_models
from vagan.training.checkpoint import META_FILE
from vagan.training.run_folder import CONFIG_FILE, METRICS_CSV


def _model(checkpoint: Path) -> TrainedModel:
    return TrainedModel(generator=None, config=None, checkpoint=checkpoint, stage="x")  # type: ignore[arg-type]


@pytest.mark.skipif("g_psnr-phantom512" not in shipped_models(), reason="the shipped model is not in this build")
def test_shipped_model_is_named_as_typed() -> None:
    model = load_trained_model(resolve_model("g_psnr-phantom512"))
    assert model.label == "g_psnr-phantom512" and model.name == "g_psnr/psnr"


def test_run_and_checkpoint_folders(tmp_path: Path) -> None:
    run = tmp_path / "ct_body_run"
    (run / "logs").mkdir(parents=True)
    (run / METRICS_CSV).write_text("step\n")
    (run / CONFIG_FILE).write_text("stages:\n  - name: psnr\n  - name: gan\n")
    for stage, name in (("psnr", "final"), ("gan", "final"), ("gan", "last")):
        (run / "checkpoints" / stage / name).mkdir(parents=True)
        (run / "checkpoints" / stage / name / META_FILE).write_text("{}")
    assert _model(run / "checkpoints" / "gan" / "final").label == "ct_body_run"  # the run's final model
    assert _model(run / "checkpoints" / "psnr" / "final").label == "ct_body_run/psnr"
    assert _model(run / "checkpoints" / "gan" / "last").label == "ct_body_run/gan/last"
    loose = tmp_path / "my_checkpoint"
    loose.mkdir()
    assert _model(loose).label == "my_checkpoint"
