#!/usr/bin/env bash
# GPU check for any machine with CUDA and PyTorch: one command that proves the
# CUDA path (the unit tests of the feature, graph, curve, training and CKA
# modules on the GPU) and measures what the README's performance section lacks
# (training speed, time to the paper's accuracy). It needs no package beyond
# PyTorch and torchvision (modgraph is imported from src/; advertorch, thop and
# papermill are not used).
#
# CIFAR-10: data/cifar10 when present, else the archive .gpu/cifar10-jpeg.tar.gz
# (copy it there first: mkdir -p .gpu && cp ../shared/datasets/cifar10-jpeg.tar.gz .gpu/).
# Run:     bash benchmarks/gpu_check.sh   (about 10 minutes on a recent GPU)
#   ARCHS="resnet18 vgg16" (default: resnet18) chooses the time-to-accuracy runs.
# Everything it prints is also written to $OUT when set, else results/gpu-check/.
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
