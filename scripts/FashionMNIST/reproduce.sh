#!/usr/bin/env bash
# The Fashion-MNIST reproduction (docs/results.md): every method x every seed with the protocol's scripts,
# resumable over several sittings, then the table, the accuracy-vs-time plot and the MI curves.
#
#   bash scripts/FashionMNIST/reproduce.sh [--seeds 0,1,2] [--out runs/fashion_mnist]
#        [--docs docs/results/fashion_mnist | --docs none] [--methods SDMI,JMI,...] [--data_dir DIR]
#        [-- extra flags for every run, e.g. --train_subset 512 --epochs 1]
#
# Each (method, seed) is its own experiment, OUT/<method>/seed<k> (--seed k --num_runs 1): a finished one
# (results.json) is skipped, an unfinished one resumed from its last checkpoint (--resume auto), so rerunning
# the same command after an interruption continues where it stopped. Per sitting of each run it appends to
# OUT/timings.csv: method, seed, UTC start, wall seconds, exit code, load average at start and at end.
# After the runs (also when some are left unfinished) it writes, from every finished run under OUT -- all
# methods and seeds, not only this command's --methods and --seeds, so a sitting on a subset never shrinks them:
#   OUT/table.md       linear probe and kNN, mean ± std over seeds, Δ vs random init (`mimax table`)
#   OUT/speed.md       wall time (all sittings) and training images/s per run
#   OUT/accuracy.png   accuracy against training time, all methods (`mimax plot accuracy`)
#   OUT/mi.png         the MI curves, SDMI family and JMI family (`mimax plot mi`)
# and copies the small files of each finished run (results.json, config.json, env.json, and the seed's
# metrics.csv, eval.csv, mi.csv, results.json) to DOCS/<method>/seed<k>/, merges OUT/timings.csv into
# DOCS/timings.csv, and writes the same four summaries in DOCS from every run kept there (those of earlier
# sittings and other OUT folders included), so that `mimax table DOCS/*/seed*` and the plots rebuild from
# docs/ alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds=0,1,2
out=runs/fashion_mnist
docs=docs/results/fashion_mnist
all_methods=(SDMI JMI SimCLR BYOL SimSiam MoCoV3 BarlowTwins VICReg)  # the protocol's methods, in the table's order
methods=$(IFS=,; echo "${all_methods[*]}")
data_dir=${MIMAX_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
die() { echo "reproduce.sh: error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) seeds=${2:?--seeds needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --docs) docs=${2:?--docs needs a value}; shift 2 ;;
    --methods) methods=${2:?--methods needs a value}; shift 2 ;;
    --data_dir) data_dir=${2:?--data_dir needs a value}; shift 2 ;;
    --) shift; break ;;
    *) die "unknown argument $1 (expected --seeds, --out, --docs, --methods, --data_dir, or -- then run flags)" ;;
  esac
done
[[ $seeds =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--seeds: expected comma-separated integers, e.g. 0,1,2 (got '$seeds')"
IFS=, read -r -a seed_list <<< "$seeds"
IFS=, read -r -a method_list <<< "$methods"
for m in "${method_list[@]}"; do
  [ -f "scripts/FashionMNIST/$m.sh" ] || die "--methods: no scripts/FashionMNIST/$m.sh (got '$m')"
done
[ -d "$data_dir" ] || die "--data_dir: $data_dir is not a directory (the Fashion-MNIST idx files)"
if [ -e "$out" ] && [ ! -d "$out" ]; then die "--out: $out exists and is not a directory"; fi
mkdir -p "$out"
[ -f "$out/timings.csv" ] || echo "method,seed,start_utc,wall_s,exit_code,load_start,load_end" > "$out/timings.csv"
load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo nan; }

failed=0
for seed in "${seed_list[@]}"; do  # seed-major: after a first sitting every method has a seed
  for m in "${method_list[@]}"; do
    run="$out/$m/seed$seed"
    if [ -f "$run/results.json" ]; then echo "$m seed $seed: finished, skipped"; continue; fi
    mkdir -p "$out/$m"
    echo "$m seed $seed: training ($([ -d "$run" ] && echo resuming || echo new)) -> $run.log"
    start=$(date +%s); started=$(date -u +%Y-%m-%dT%H:%M:%SZ); load0=$(load)
    code=0
    bash "scripts/FashionMNIST/$m.sh" --data_dir "$data_dir" --seed "$seed" --resume auto --output_dir "$run" \
      "$@" >> "$run.log" 2>&1 || code=$?
    echo "$m,$seed,$started,$(( $(date +%s) - start )),$code,$load0,$(load)" >> "$out/timings.csv"
    if [ "$code" -ne 0 ]; then echo "$m seed $seed: exit code $code (see $run.log)" >&2; failed=1; fi
  done
done

finished_in() {  # every finished run under $1, as $1/<method>/seed<k>, methods in the table's order
  local m run
  for m in "${all_methods[@]}"; do
    [ -d "$1/$m" ] || continue
    printf '%s\n' "$1/$m"/seed* | sort -V | while IFS= read -r run; do
      if [[ ${run##*/} =~ ^seed[0-9]+$ ]] && [ -f "$run/results.json" ]; then echo "$run"; fi
    done
  done
  return 0
}
summarize() {  # table.md, accuracy.png, mi.png and speed.md in $1 from the finished runs under it
  local dir=$1 runs
  mapfile -t runs < <(finished_in "$dir")
  [ ${#runs[@]} -gt 0 ] || return 1
  python - "$dir" "${runs[@]}" <<'EOF'
"""In one process (one torch import, not four): `mimax table`, `mimax plot accuracy` and `mimax plot mi` of the
runs, then speed.md: per finished run, the wall time over all its sittings (timings.csv) and the training
images/s (training images of all epochs / the epochs' training time, metrics.csv)."""
import csv
import sys
from pathlib import Path

from mimax.cli import main

out, runs = Path(sys.argv[1]), sys.argv[2:]
for command, name in ((["table"], "table.md"), (["plot", "accuracy"], "accuracy.png"), (["plot", "mi"], "mi.png")):
    code = main([*command, *runs, "--out", str(out / name), "--overwrite"])
    if code:
        sys.exit(code)
wall, sittings = {}, {}
with open(out / "timings.csv", newline="") as f:
    for row in csv.DictReader(f):
        key = (row["method"], row["seed"])
        wall[key] = wall.get(key, 0) + int(row["wall_s"])
        sittings[key] = sittings.get(key, 0) + 1
lines = ["| method | seed | wall time (min, all sittings) | sittings | training images/s | training time (min) |",
         "|---|---|---|---|---|---|"]
for run in map(Path, runs):
    method, seed = run.parent.name, run.name.removeprefix("seed")
    seed_dir = run / f"seed_{seed}"
    with open(seed_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    seconds = sum(float(r["epoch_time_s"]) for r in rows)
    images = sum(float(r["images_per_s"]) * float(r["epoch_time_s"]) for r in rows)
    w = wall.get((method, seed))
    lines.append(f"| {method} | {seed} | {'–' if w is None else f'{w / 60:.1f}'} | {sittings.get((method, seed), 0)} "
                 f"| {images / seconds:.0f} | {seconds / 60:.1f} |")
(out / "speed.md").write_text("\n".join(lines) + "\n")
print(f"wrote {out / 'speed.md'}")
EOF
}

mapfile -t finished < <(finished_in "$out")
if [ ${#finished[@]} -eq 0 ]; then echo "reproduce.sh: no finished run yet" >&2; exit 1; fi
summarize "$out"

if [ "$docs" != none ]; then
  for run in "${finished[@]}"; do
    m=$(basename "$(dirname "$run")"); s=$(basename "$run"); k=${s#seed}
    dest="$docs/$m/$s"
    mkdir -p "$dest/seed_$k"
    for f in results.json config.json env.json; do [ -f "$run/$f" ] && cp "$run/$f" "$dest/$f"; done
    for f in results.json config.json metrics.csv eval.csv mi.csv; do
      [ -f "$run/seed_$k/$f" ] && cp "$run/seed_$k/$f" "$dest/seed_$k/$f"
    done
  done
  # DOCS/timings.csv: the rows it had plus OUT's new ones (a row is one sitting: method, seed, start, ...)
  if [ -f "$docs/timings.csv" ]; then
    { head -n1 "$out/timings.csv"; tail -n +2 -q "$docs/timings.csv" "$out/timings.csv" | awk '!seen[$0]++'; } \
      > "$docs/timings.csv.tmp"
    mv "$docs/timings.csv.tmp" "$docs/timings.csv"
  else
    cp "$out/timings.csv" "$docs/timings.csv"
  fi
  summarize "$docs"
  echo "copied the small files of ${#finished[@]} finished run(s) to $docs; its summaries cover every run kept there"
fi
exit $failed
