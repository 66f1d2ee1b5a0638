#!/usr/bin/env bash
# SDMI on CIFAR100: the preset recipe for (SDMI, CIFAR100) (the paper's reference command settings), which `mimax train --model_name SDMI --dataset CIFAR100` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR100/SDMI.sh --data_dir /path/to/data --output_dir runs/CIFAR100_SDMI
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SDMI \
  --dataset CIFAR100 \
  --num_runs 3 \
  --num_workers 4 \
  "$@"
