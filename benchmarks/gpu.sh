#!/usr/bin/env bash
# GPU rows of benchmarks/RESULTS.md, as one prepared run on a CUDA machine (about 8 minutes on an
# H200-class GPU): inference per 512^2 slice at batch 1 and slices/s at batch 16 for every method
# and mode, and training patches/s per preset and stage (fp32 against the fast path), with peak
# GPU memory. Results land in benchmarks/results/*_gpu.{json,md}; collect them with
# `python benchmarks/make_results.py`. Tests never depend on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
python -m pip install --quiet -e ".[onnx]" || python -m pip install --quiet -e .
python benchmarks/bench_inference.py --device cuda --tag _gpu --repeats 5 --series 64 \
    --methods g_psnr,vagan,red_cnn,wgan_vgg --modes fp32,bf16,compile
python benchmarks/bench_training.py --device cuda --tag _gpu --steps 10
