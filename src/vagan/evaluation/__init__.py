"""vagan.evaluation: metrics with explicit data ranges, FID from features, figures, reports.

Modules: ``metrics`` (PSNR/SSIM/RMSE, conventions, patch choice, MetricAccumulator), ``fid``
(Fréchet distance from features), ``feature_nets`` (named feature networks), ``plots`` (Fig. 2-4
PNGs, curves), ``table`` (Table II), ``report`` (Markdown + HTML). ``vagan evaluate``:
``eval_config`` (what it runs), ``inputs`` (methods loaded, test slices, FID net), ``running``
(methods run, scored and timed), ``report_sections`` and ``report_figures`` (the report's text,
tables and figures), ``runner`` (all of it). ``training_report``: ``vagan report``. Import the
submodules directly.
"""
