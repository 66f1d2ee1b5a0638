#!/usr/bin/env bash
# SimSiam on Fashion-MNIST, CPU-scale protocol (width-16 ResNet-18, 3 epochs on a fixed 10,000-image subset, auto precision: bf16 where the CPU has it natively; designed for <= 15 min on 2 cores).
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/FashionMNIST/SimSiam.sh --data_dir /path/to/data --output_dir runs/FashionMNIST_SimSiam
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimSiam \
  --dataset FashionMNIST \
  --architecture ResNet18 \
  --resnet_width 16 \
  --num_classes 10 \
  --epochs 3 \
  --train_subset 10000 \
  --warmup_epochs 1 \
  --batch_size 128 \
  --optimizer sgd \
  --initial_lr 0.25 \
  --weight_decay 1e-5 \
  --feature_dim 512 \
  --projection_dim 512 \
  --projection_layer 3 \
  --predictor_dim 128 \
  --num_runs 1 \
  --augmentation \
  --gpu_augment \
  --precision auto \
  --channels_last \
  --num_threads 2 \
  --num_workers 0 \
  --mi_interval 1 \
  --model_save_interval 1 \
  --model_evaluation_interval 1000 \
  "$@"
