#!/usr/bin/env bash
# BYOL on CIFAR100: solo-learn cifar settings for BYOL.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR100/BYOL.sh --data_dir /path/to/data --output_dir runs/CIFAR100_BYOL
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name BYOL \
  --dataset CIFAR100 \
  --architecture ResNet18 \
  --num_classes 100 \
  --epochs 1000 \
  --warmup_epochs 10 \
  --batch_size 256 \
  --optimizer lars \
  --initial_lr 1 \
  --weight_decay 1e-5 \
  --lars_eta 0.02 \
  --num_runs 3 \
  --augmentation \
  --feature_dim 4096 \
  --projection_dim 256 \
  --projection_layer 2 \
  --ema_momentum 0.99 \
  --predictor_dim 4096 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 4 \
  "$@"
