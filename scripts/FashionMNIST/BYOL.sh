#!/usr/bin/env bash
# BYOL on Fashion-MNIST: the CPU-scale protocol, which is the FashionMNIST preset (width-16 ResNet-18, 2 epochs of all 60,000 training images); this script adds how it runs: auto precision (bf16 where the CPU computes it natively, else fp32) on 2 threads.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/FashionMNIST/BYOL.sh --data_dir /path/to/data --output_dir runs/FashionMNIST_BYOL
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name BYOL \
  --dataset FashionMNIST \
  --num_runs 1 \
  --gpu_augment \
  --precision auto \
  --channels_last \
  --num_threads 2 \
  --num_workers 0 \
  --mi_interval 1 \
  "$@"
