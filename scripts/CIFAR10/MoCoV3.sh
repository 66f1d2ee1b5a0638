#!/usr/bin/env bash
# MoCoV3 on CIFAR10: the preset recipe for (MoCoV3, CIFAR10) (solo-learn cifar settings), which `mimax train --model_name MoCoV3 --dataset CIFAR10` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR10/MoCoV3.sh --data_dir /path/to/data --output_dir runs/CIFAR10_MoCoV3
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name MoCoV3 \
  --dataset CIFAR10 \
  --num_runs 3 \
  --num_workers 4 \
  "$@"
