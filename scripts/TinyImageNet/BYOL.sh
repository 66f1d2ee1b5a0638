#!/usr/bin/env bash
# BYOL on TinyImageNet: the preset recipe for (BYOL, TinyImageNet) (solo-learn cifar settings), which `mimax train --model_name BYOL --dataset TinyImageNet` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/BYOL.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_BYOL
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name BYOL \
  --dataset TinyImageNet \
  --num_runs 3 \
  --num_workers 8 \
  "$@"
