#!/usr/bin/env bash
# VICReg on TinyImageNet: the preset recipe for (VICReg, TinyImageNet) (solo-learn cifar settings), which `mimax train --model_name VICReg --dataset TinyImageNet` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/VICReg.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_VICReg
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name VICReg \
  --dataset TinyImageNet \
  --num_runs 3 \
  --num_workers 8 \
  "$@"
