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
if [[ "${1:-}" == "study" ]]; then
    # `benchmarks/gpu.sh study`: the real-anatomy study (docs/studies/real-anatomy.yaml) on this GPU, its data
    # made first (REAL_CT: the Pancreatic-CT-CBCT-SEG series); run it again to resume. Its report lists
    # each run's wall time and patches/s on this GPU.
    python -m pip install --quiet -e ".[bm3d,test]"   # BM3D; pydicom-data and a JPEG 2000 decoder for the held-out slices
    docs/studies/real-anatomy-data.sh data
    vagan study docs/studies/real-anatomy.yaml studies/real-anatomy --device cuda
    exit
fi
python benchmarks/bench_inference.py --device cuda --tag _gpu --repeats 5 --series 64 \
    --methods g_psnr,vagan,red_cnn,wgan_vgg --modes fp32,bf16,compile
python benchmarks/bench_training.py --device cuda --tag _gpu --steps 10
