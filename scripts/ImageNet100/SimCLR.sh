#!/usr/bin/env bash
# SimCLR on ImageNet100: solo-learn imagenet-100 settings for SimCLR.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/ImageNet100/SimCLR.sh --data_dir /path/to/data --output_dir runs/ImageNet100_SimCLR
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimCLR \
  --dataset ImageNet100 \
  --architecture ResNet50 \
  --num_classes 100 \
  --epochs 400 \
  --warmup_epochs 10 \
  --batch_size 128 \
  --optimizer lars \
  --initial_lr 0.15 \
  --weight_decay 1e-4 \
  --lars_eta 0.02 \
  --temperature 0.2 \
  --num_runs 3 \
  --augmentation \
  --feature_dim 4096 \
  --projection_dim 512 \
  --projection_layer 2 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 16 \
  "$@"
