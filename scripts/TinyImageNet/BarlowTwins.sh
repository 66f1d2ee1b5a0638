#!/usr/bin/env bash
# BarlowTwins on TinyImageNet: the preset recipe for (BarlowTwins, TinyImageNet) (solo-learn cifar settings), which `mimax train --model_name BarlowTwins --dataset TinyImageNet` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/BarlowTwins.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_BarlowTwins
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name BarlowTwins \
  --dataset TinyImageNet \
  --num_runs 3 \
  --num_workers 8 \
  "$@"
