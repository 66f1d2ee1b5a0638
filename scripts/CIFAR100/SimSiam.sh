#!/usr/bin/env bash
# SimSiam on CIFAR100: solo-learn cifar settings for SimSiam.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR100/SimSiam.sh --data_dir /path/to/data --output_dir runs/CIFAR100_SimSiam
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimSiam \
  --dataset CIFAR100 \
  --architecture ResNet18 \
  --num_classes 100 \
  --epochs 1000 \
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
  --num_workers 4 \
  "$@"
