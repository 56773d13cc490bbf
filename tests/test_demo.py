"""The README demo end to end, shrunk: simulate, train with step and time caps, evaluate, report."""

from __future__ import annotations

from vagan.demo import load_demo_config, run_demo


def test_tiny_demo_runs_end_to_end_and_reports_the_steps_each_cap_allowed(tmp_path):
    cfg = load_demo_config(None, [
        "dataset.patients=3", "dataset.slices_per_patient=2", "dataset.size=64",
        "dataset.simulation.n_views=288", "dataset.simulation.n_detectors=184",
        "dataset.simulation.detector_spacing_mm=5.1432",
        "split={train: [PH001], val: [PH002], test: [PH003]}",
        "presets=[g_psnr, vagan]", "steps={psnr: 2, gan: 1, g_psnr.psnr: 50}",
        "minutes={g_psnr.psnr: 0.0001}",  # 6 ms: the time cap ends g_psnr after its first step
        "evaluation.methods=[ldct]", "evaluation.quality.enabled=false", "evaluation.timing_slices=0",
        "evaluation.figure_slices=1",
    ])
    report = run_demo(tmp_path / "demo", cfg)
    text = report.read_text()
    assert "## Demo training: steps per stage" in text
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line
            for line in text.splitlines() if line.startswith("| g_psnr |") or line.startswith("| vagan |")}
    assert "| 1 | 50 |" in rows[("g_psnr", "psnr")] and "time cap" in rows[("g_psnr", "psnr")]
    assert "| 2 | 2 |" in rows[("vagan", "psnr")] and "step cap" in rows[("vagan", "psnr")]
    assert "| 1 | 1 |" in rows[("vagan", "gan")]
    assert "stage psnr (1 step)" in text and "stage gan (1 step)" in text  # the Methods section says how far each model trained
    for preset in ("g_psnr", "vagan"):
        assert (tmp_path / "demo" / "runs" / preset / "config.yaml").is_file()
