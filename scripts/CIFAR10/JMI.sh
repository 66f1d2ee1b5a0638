#!/usr/bin/env bash
# JMI on CIFAR10: the preset recipe for (JMI, CIFAR10) (the paper's reference command settings), which `mimax train --model_name JMI --dataset CIFAR10` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/CIFAR10/JMI.sh --data_dir /path/to/data --output_dir runs/CIFAR10_JMI
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name JMI \
  --dataset CIFAR10 \
  --num_runs 3 \
  --num_workers 4 \
  "$@"
