#!/usr/bin/env bash
# VICReg on CIFAR10: the preset recipe for (VICReg, CIFAR10) (solo-learn cifar settings), which `mimax train --model_name VICReg --dataset CIFAR10` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR10/VICReg.sh --data_dir /path/to/data --output_dir runs/CIFAR10_VICReg
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name VICReg \
  --dataset CIFAR10 \
  --num_runs 3 \
  --num_workers 4 \
  "$@"
