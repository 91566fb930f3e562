#!/usr/bin/env bash
# The prepared check for a lent GPU machine (the workplace's device tool): one
# call that proves the CUDA path and measures what the README's performance
# section still lacks. It needs no package beyond the GPU image's PyTorch stack
# (modgraph is imported from src/; advertorch, thop and papermill are not used).
#
# Here, once (the copy of the CIFAR-10 tarball travels in the ignored .gpu/):
#   mkdir -p .gpu && cp ../shared/datasets/cifar10-jpeg.tar.gz .gpu/
# Device:  run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=590)
#   ARCHS="resnet18 vgg16" (default: resnet18) chooses the time-to-accuracy runs.
# Everything it prints is also written to $OUT (or results/gpu-check/ elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/gpu-check}
mkdir -p "$out" data
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ ! -d data/cifar10 ]; then
    tar -xzf .gpu/cifar10-jpeg.tar.gz -C data
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    python3 -m pytest -q -p no:cacheprovider tests/test_features.py tests/test_graph.py tests/test_curve.py \
        tests/test_train.py tests/test_cka.py
    python3 benchmarks/train_speed.py --device cuda --arch ${ARCHS:-resnet18} --width 1 0.25
    python3 benchmarks/graph_speed.py --device cuda --n 500 2000 5000 10000 --d 512 4096 65536 \
        --reference-max-n 2000 --max-elements 7e8
} 2>&1 | tee "$out/gpu_check.log"
