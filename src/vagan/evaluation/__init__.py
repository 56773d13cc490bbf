"""vagan.evaluation: metrics with explicit data ranges, FID from features, figures, reports.

Modules: ``metrics`` (PSNR/SSIM/RMSE, patch choice, MetricAccumulator), ``fid`` (Fréchet
distance from features), ``feature_nets`` (named feature networks), ``plots`` (Fig. 2-4 PNGs, curves),
``table`` (Table II), ``report`` (Markdown + HTML), ``eval_config`` (what ``vagan evaluate`` runs),
``runner`` (methods on a test set -> tables, figures, report), ``report_figures`` and
``training_report`` (``vagan report``). Import the submodules directly.
"""
