#!/usr/bin/env bash
# JMI on TinyImageNet: the preset recipe for (JMI, TinyImageNet) (the paper's reference command settings), which `mimax train --model_name JMI --dataset TinyImageNet` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/TinyImageNet/JMI.sh --data_dir /path/to/data --output_dir runs/TinyImageNet_JMI
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name JMI \
  --dataset TinyImageNet \
  --num_runs 3 \
  --num_workers 8 \
  "$@"
