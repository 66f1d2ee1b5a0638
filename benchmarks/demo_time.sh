#!/usr/bin/env bash
# Wall time of `mimax demo` at its defaults (15 configurations x 3 seeds, 2 workers of one thread each),
# measured with /usr/bin/time, with the machine and versions. Usage: bash benchmarks/demo_time.sh [OUT_DIR]
set -euo pipefail
out=$(realpath -m -- "${1:-$(mktemp -d)/demo}")  # resolved against the caller's directory, before the cd
cd "$(dirname "$0")/.."
mkdir -p "$(dirname "$out")"  # the log goes beside the output folder, which the demo creates itself
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python -c "import platform, torch; print(f'python {platform.python_version()}, torch {torch.__version__}')"
/usr/bin/time -f "mimax demo: %e s wall, %U s user, %S s system, max RSS %M KB" \
  python -m mimax demo --output_dir "$out" > "$out.log" 2>&1 || { tail -5 "$out.log"; exit 1; }
tail -1 "$out.log"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); output: $out"
