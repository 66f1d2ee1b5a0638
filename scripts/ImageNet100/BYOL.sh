#!/usr/bin/env bash
# BYOL on ImageNet100: solo-learn imagenet-100 settings for BYOL.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/ImageNet100/BYOL.sh --data_dir /path/to/data --output_dir runs/ImageNet100_BYOL
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name BYOL \
  --dataset ImageNet100 \
  --architecture ResNet50 \
  --num_classes 100 \
  --epochs 400 \
  --warmup_epochs 10 \
  --batch_size 256 \
  --optimizer lars \
  --initial_lr 0.5 \
  --weight_decay 1e-6 \
  --lars_eta 0.02 \
  --num_runs 3 \
  --augmentation \
  --feature_dim 4096 \
  --projection_dim 256 \
  --projection_layer 2 \
  --ema_momentum 0.99 \
  --predictor_dim 8192 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 16 \
  "$@"
