#!/usr/bin/env bash
# Side by side with PyTorch on this machine: the reference workloads of
# ../shared/bench/WORKLOADS.md through PyTorch (../shared/bench/pytorch/run_all.py, and
# scripts/bench/wavenet_sample.py for W6's generation), the
# machine's sgemm limit through NumPy/OpenBLAS (AVX2 and AVX-512 kernels), then
# `neurogen bench` on the CPU backends, one after the other; prints the comparison table and
# draws assets/bench/compare.svg.
#
#   scripts/compare-pytorch.sh [--threads N] [--backend ndarray,flex] [--out DIR] [--rounds N]
#
# With --rounds N (default 1) the whole sequence runs N times, each round into DIR/round-K/,
# and the table gives each row's median over the rounds with its range, and the median of
# the per-round ratios (a VM's speed drifts between rounds more than within one).
#
# PyTorch comes from a virtual environment (NEUROGEN_BENCH_VENV, default
# ~/.cache/neurogen/bench-venv), created and filled with torch and numpy from PyPI when
# missing. Run it on an idle machine: no build or training beside it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
bench="${NEUROGEN_BENCH_DIR:-$root/../shared/bench}"
venv="${NEUROGEN_BENCH_VENV:-$HOME/.cache/neurogen/bench-venv}"
threads=2
backends="ndarray,flex"
out="$root/assets/bench/$(date +%F)"
rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --backend) backends="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "compare-pytorch.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -f "$bench/pytorch/run_all.py" ] || { echo "compare-pytorch.sh: $bench/pytorch/run_all.py not found (set NEUROGEN_BENCH_DIR)" >&2; exit 2; }

if ! "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
  echo "== installing torch and numpy into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch numpy
fi
neurogen="${CARGO_TARGET_DIR:-$root/target}/release/neurogen"
if [ ! -x "$neurogen" ] || [ -n "${NEUROGEN_REBUILD:-}" ]; then
  (cd "$root" && cargo build --release)
fi

py="$venv/bin/python"
one_round() {
  local dir="$1"
  mkdir -p "$dir"
  echo "== PyTorch $("$py" -c 'import torch; print(torch.__version__)') ($threads threads)" >&2
  {
    "$py" "$bench/pytorch/run_all.py" --threads "$threads"
    # WaveNet generation has no script in the shared set; ours reuses W6's model and harness.
    PYTHONPATH="$bench/pytorch" "$py" "$here/bench/wavenet_sample.py" --threads "$threads"
  } | tee "$dir/pytorch.jsonl" >&2
  echo "== NumPy/OpenBLAS sgemm (machine limit)" >&2
  {
    "$py" "$bench/pytorch/sgemm_openblas.py" --threads "$threads"
    "$py" "$bench/pytorch/sgemm_openblas.py" --threads "$threads" --coretype SkylakeX
  } | tee "$dir/openblas.jsonl" >&2
  echo "== neurogen bench ($backends, $threads threads)" >&2
  "$neurogen" bench --workload all --backend "$backends" --threads "$threads" -o "$dir/burn.jsonl" >&2
  {
    echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "date: $(date +%F)"
    echo "torch: $("$py" -c 'import torch; print(torch.__version__)'); neurogen: $("$neurogen" --version)"
  } > "$dir/machine.txt"
}
if [ "$rounds" -le 1 ]; then
  one_round "$out"
  python3 "$here/compare_table.py" "$out" --svg "$root/assets/bench/compare.svg"
else
  dirs=()
  for k in $(seq 1 "$rounds"); do
    echo "== round $k of $rounds" >&2
    one_round "$out/round-$k"
    dirs+=("$out/round-$k")
  done
  python3 "$here/compare_table.py" "${dirs[@]}" --svg "$root/assets/bench/compare.svg"
fi
