#!/usr/bin/env bash
# VICReg on TinyImageNet: solo-learn cifar settings for VICReg.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/VICReg.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_VICReg
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name VICReg \
  --dataset TinyImageNet \
  --architecture ResNet18 \
  --num_classes 200 \
  --epochs 400 \
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
  --vicreg_sim_coeff 25 \
  --vicreg_std_coeff 25 \
  --vicreg_cov_coeff 1 \
  --model_save_interval 50 \
  --model_evaluation_interval 1000 \
  --num_workers 8 \
  "$@"
