#!/usr/bin/env bash
# SDMI on TinyImageNet: the preset recipe for (SDMI, TinyImageNet) (the paper's reference command settings), which `mimax train --model_name SDMI --dataset TinyImageNet` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/SDMI.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_SDMI
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SDMI \
  --dataset TinyImageNet \
  --num_runs 3 \
  --num_workers 8 \
  "$@"
