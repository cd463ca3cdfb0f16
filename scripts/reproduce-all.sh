#!/usr/bin/env bash
# `neurogen reproduce` on every shipped config and CPU backend: trains each for K steps
# (default 30) into OUT/<config>-<backend>, retrains it with `neurogen reproduce`, and prints
# one Markdown row per run: the verdict and both wall times.
#
#   scripts/reproduce-all.sh [NEUROGEN_BINARY] [--steps K] [--out DIR] [--backend ndarray,flex]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/target/release/neurogen"
steps=30
out="runs/reproduce-all"
backends="ndarray,flex"
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --backend) backends="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    -*) echo "reproduce-all.sh: unknown argument $1" >&2; exit 2 ;;
    *) bin="$1"; shift ;;
  esac
done
[ -x "$bin" ] || { echo "reproduce-all.sh: $bin not found; build with cargo build --release" >&2; exit 2; }
mkdir -p "$out"
echo "| config | backend | train (s) | reproduce (s) | verdict |"
echo "|---|---|---|---|---|"
fails=0
for cfg in "$root"/configs/*.toml; do
  name=$(basename "$cfg" .toml)
  for b in ${backends//,/ }; do
    run="$out/$name-$b"
    rm -rf "$run" "$run-reproduced"
    t0=$(date +%s.%N)
    "$bin" train "$cfg" --backend "$b" --out "$run" --set train.steps="$steps" -q
    t1=$(date +%s.%N)
    if verdict=$("$bin" reproduce "$run" -q 2>&1); then :; else fails=$((fails + 1)); fi
    t2=$(date +%s.%N)
    verdict=$(echo "$verdict" | sed 's/ (.*s; reproduction in .*)$//' | tr '\n' ' ')
    awk -v n="$name" -v b="$b" -v a="$t0" -v m="$t1" -v e="$t2" -v v="$verdict" \
      'BEGIN { printf "| `%s` | %s | %.1f | %.1f | %s |\n", n, b, m - a, e - m, v }'
  done
done
[ "$fails" -eq 0 ] || { echo "reproduce-all.sh: $fails runs did not reproduce" >&2; exit 1; }
