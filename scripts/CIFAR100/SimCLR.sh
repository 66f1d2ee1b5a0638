#!/usr/bin/env bash
# SimCLR on CIFAR100: the preset recipe for (SimCLR, CIFAR100) (solo-learn cifar settings), which `mimax train --model_name SimCLR --dataset CIFAR100` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR100/SimCLR.sh --data_dir /path/to/data --output_dir runs/CIFAR100_SimCLR
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimCLR \
  --dataset CIFAR100 \
  --num_runs 3 \
  --num_workers 4 \
  "$@"
