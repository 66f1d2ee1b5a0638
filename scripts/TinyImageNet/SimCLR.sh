#!/usr/bin/env bash
# SimCLR on TinyImageNet: solo-learn cifar settings for SimCLR.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/SimCLR.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_SimCLR
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimCLR \
  --dataset TinyImageNet \
  --architecture ResNet18 \
  --num_classes 200 \
  --epochs 400 \
  --warmup_epochs 10 \
  --batch_size 256 \
  --optimizer lars \
  --initial_lr 0.4 \
  --weight_decay 1e-4 \
  --lars_eta 0.02 \
  --temperature 0.2 \
  --num_runs 3 \
  --augmentation \
  --feature_dim 2048 \
  --projection_dim 256 \
  --projection_layer 2 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 8 \
  "$@"
