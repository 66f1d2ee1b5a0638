#!/usr/bin/env bash
# SimCLR on TinyImageNet: the preset recipe for (SimCLR, TinyImageNet) (solo-learn cifar settings), which `mimax train --model_name SimCLR --dataset TinyImageNet` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/SimCLR.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_SimCLR
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimCLR \
  --dataset TinyImageNet \
  --num_runs 3 \
  --num_workers 8 \
  "$@"
