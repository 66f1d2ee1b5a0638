#!/usr/bin/env bash
# SimSiam on ImageNet100: solo-learn imagenet-100 settings for SimSiam.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/ImageNet100/SimSiam.sh --data_dir /path/to/data --output_dir runs/ImageNet100_SimSiam
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimSiam \
  --dataset ImageNet100 \
  --architecture ResNet50 \
  --num_classes 100 \
  --epochs 400 \
  --warmup_epochs 10 \
  --batch_size 256 \
  --optimizer sgd \
  --initial_lr 0.5 \
  --weight_decay 1e-5 \
  --num_runs 3 \
  --augmentation \
  --feature_dim 2048 \
  --projection_dim 2048 \
  --projection_layer 3 \
  --predictor_dim 512 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 16 \
  "$@"
