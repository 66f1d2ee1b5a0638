#!/usr/bin/env bash
# SimSiam on ImageNet100: the preset recipe for (SimSiam, ImageNet100) (solo-learn imagenet-100 settings), which `mimax train --model_name SimSiam --dataset ImageNet100` trains;
# this script adds the experiment's size (3 seeds) and data loader workers.
# Hyperparameters and their sources: scripts/README.md. Extra flags are passed through, e.g.
#   bash scripts/ImageNet100/SimSiam.sh --data_dir /path/to/data --output_dir runs/ImageNet100_SimSiam
set -euo pipefail
cd "$(dirname "$0")/../.."
python main.py \
  --model_name SimSiam \
  --dataset ImageNet100 \
  --num_runs 3 \
  --num_workers 16 \
  "$@"
