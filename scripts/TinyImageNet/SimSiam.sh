#!/usr/bin/env bash
# SimSiam on TinyImageNet: the preset recipe for (SimSiam, TinyImageNet) (solo-learn cifar settings), which `mimax train --model_name SimSiam --dataset TinyImageNet` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/SimSiam.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_SimSiam
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimSiam \
  --dataset TinyImageNet \
  --num_runs 3 \
  --num_workers 8 \
  "$@"
