#!/usr/bin/env bash
# The Fashion-MNIST reproduction recorded in docs/results.md: all eight methods with the CPU-scale scripts
# (one seed each), the wall time of each run, Table 1 and the MI curves. Usage:
#   bash scripts/FashionMNIST/reproduce.sh OUT_DIR [extra flags for every run]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: reproduce.sh OUT_DIR [flags]}
shift
if [ -e "$out" ]; then echo "reproduce.sh: $out exists; choose a new folder" >&2; exit 2; fi
mkdir -p "$out"
for method in SDMI JMI SimCLR BYOL SimSiam MoCoV3 BarlowTwins VICReg; do
  start=$(date +%s)
  bash "scripts/FashionMNIST/$method.sh" --output_dir "$out/$method" "$@" > "$out/$method.log" 2>&1
  echo "$method $(( $(date +%s) - start ))" >> "$out/wall_times.txt"
done
python -m mimax table "$out"/*/ --out "$out/table.md"
python -m mimax plot mi $(for m in SDMI JMI SimCLR BYOL SimSiam MoCoV3 BarlowTwins VICReg; do echo "$out/$m"; done) \
  --out "$out/mi.png"
