#!/usr/bin/env bash
# SDMI on CIFAR10: the reference command's hyperparameters (the seed's ImageNet100/SDMI example).
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR10/SDMI.sh --data_dir /path/to/data --output_dir runs/CIFAR10_SDMI
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SDMI \
  --dataset CIFAR10 \
  --architecture ResNet18 \
  --num_classes 10 \
  --epochs 1000 \
  --warmup_epochs 10 \
  --batch_size 64 \
  --initial_lr 0.05 \
  --weight_decay 0.0001 \
  --temperature 0.1 \
  --num_runs 3 \
  --augmentation \
  --feature_dim 512 \
  --projection_dim 256 \
  --projection_layer 3 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 4 \
  "$@"
