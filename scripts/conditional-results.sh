#!/usr/bin/env bash
# Trains every conditional config, evaluates each against its test split and prints the
# README's "Conditional generation" table. Usage: scripts/conditional-results.sh [NEUROGEN]
# (default target/release/neurogen); runs go to runs/<config>, reports to runs/<config>/eval.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/neurogen}
configs=(cvae-kuramoto cgan-lorenz crealnvp-kuramoto clatent-ode-lorenz cvae-edf-epochs)
for c in "${configs[@]}"; do
  rm -rf "runs/$c"
  SECONDS=0
  "$bin" train "configs/$c.toml" -q
  echo "$c trained in ${SECONDS} s" >&2
  "$bin" eval "runs/$c" -q
done
python3 - "${configs[@]}" <<'PY'
import json, sys
keys = [("psd_db_distance@mean", "PSD dB distance (mean over conditions)"),
        ("rate_abs_error_hz@mean", "rate error Hz (mean over conditions)"),
        ("evoked_correlation@mean", "evoked r"),
        ("tstr_balanced_accuracy", "TSTR"), ("trtr_balanced_accuracy", "TRTR"),
        ("augment_real_k10", "k=10 real"), ("augment_real+synthetic_k10", "k=10 +synthetic"),
        ("augmentation_gain_k10_vs_real", "gain vs real"),
        ("augmentation_gain_k10_vs_best_handcrafted", "gain vs best hand-crafted")]
print("| config | " + " | ".join(k[1] for k in keys) + " |")
print("|---" * (len(keys) + 1) + "|")
for c in sys.argv[1:]:
    r = json.load(open(f"runs/{c}/eval/report.json"))
    cells = []
    for k, _ in keys:
        v = r.get(k)
        cells.append("–" if v is None else f"{v:+.3f}" if "gain" in k else f"{v:.3f}")
    print(f"| `{c}` | " + " | ".join(cells) + " |")
PY
