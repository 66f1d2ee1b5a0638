#!/usr/bin/env bash
# GPU acceptance run (see benchmarks/gpu_check.py): every method and speed setting trained on CUDA,
# one table of img/s, s/epoch, peak GPU memory and finite losses; exit 1 on any failure.
#   bash benchmarks/gpu_check.sh            # on a machine with >= 1 CUDA GPU (<= 8 minutes)
#   bash benchmarks/gpu_check.sh --smoke    # the same rows, tiny, on the CPU (< 2 minutes)
set -euo pipefail
exec python "$(dirname "$0")/gpu_check.py" "$@"  # from the caller's directory: a relative --out is theirs
