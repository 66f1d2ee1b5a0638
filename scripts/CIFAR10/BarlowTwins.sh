#!/usr/bin/env bash
# BarlowTwins on CIFAR10: solo-learn cifar settings for BarlowTwins.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR10/BarlowTwins.sh --data_dir /path/to/data --output_dir runs/CIFAR10_BarlowTwins
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name BarlowTwins \
  --dataset CIFAR10 \
  --architecture ResNet18 \
  --num_classes 10 \
  --epochs 1000 \
  --warmup_epochs 10 \
  --batch_size 256 \
  --optimizer lars \
  --initial_lr 0.3 \
  --weight_decay 1e-4 \
  --lars_eta 0.02 \
  --num_runs 3 \
  --augmentation \
  --feature_dim 2048 \
  --projection_dim 2048 \
  --projection_layer 3 \
  --barlow_lambda 0.0051 \
  --barlow_scale 0.1 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 4 \
  "$@"
