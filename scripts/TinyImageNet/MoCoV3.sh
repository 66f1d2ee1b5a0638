#!/usr/bin/env bash
# MoCoV3 on TinyImageNet: solo-learn cifar settings for MoCoV3.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/MoCoV3.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_MoCoV3
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name MoCoV3 \
  --dataset TinyImageNet \
  --architecture ResNet18 \
  --num_classes 200 \
  --epochs 400 \
  --warmup_epochs 10 \
  --batch_size 256 \
  --optimizer lars \
  --initial_lr 0.3 \
  --weight_decay 1e-6 \
  --lars_eta 0.02 \
  --temperature 0.2 \
  --num_runs 3 \
  --augmentation \
  --feature_dim 4096 \
  --projection_dim 256 \
  --projection_layer 2 \
  --ema_momentum 0.99 \
  --predictor_dim 4096 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 8 \
  "$@"
