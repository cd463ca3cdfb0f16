#!/usr/bin/env bash
# Reproduces the README's "Anomaly detection" table: every shipped continuous config with a
# likelihood (all but the GANs') trained as shipped, then `neurogen eval --anomalies` (256
# held-out windows per artefact type). Runs go to runs/anomalies/<config>; finished ones are
# reused.
#   bash scripts/anomalies.sh [path/to/neurogen] [config …]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/neurogen}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(wavenet-edf vae-edf vae-gan-edf realnvp-edf latent-ode-edf
  diffusion-edf cvae-edf-epochs wavenet-kuramoto vae-kuramoto vae-gan-kuramoto realnvp-kuramoto
  latent-ode-kuramoto diffusion-kuramoto cvae-kuramoto crealnvp-kuramoto wavenet-neural-mass
  vae-neural-mass realnvp-neural-mass latent-ode-neural-mass diffusion-neural-mass)
out=runs/anomalies
mkdir -p "$out"
for c in "${configs[@]}"; do
  # --resume: a fresh run starts, an interrupted one continues, a finished one is left as is.
  "$bin" train "configs/$c.toml" --out "$out/$c" -q --resume
  if [ ! -f "$out/$c/eval-anomalies/report.json" ]; then
    s=$(date +%s)
    "$bin" eval "$out/$c" --anomalies -q
    echo $(( $(date +%s) - s )) > "$out/$c/eval-anomalies/seconds.txt"
  fi
done
python3 - "$out" "${configs[@]}" <<'PY'
import json, os, sys
out, configs = sys.argv[1], sys.argv[2:]
types = ["flat_channel", "flat_all", "step", "spike", "line_noise", "burst", "clipping", "blink"]
methods = ["likelihood", "typicality", "ratio"]
reports = {c: json.load(open(f"{out}/{c}/eval-anomalies/report.json")) for c in configs
           if os.path.exists(f"{out}/{c}/eval-anomalies/report.json")}
print("AUROC, injected against clean (bold: ≥ 0.95), and the false-positive rate at α = 0.01 on the clean test windows:\n")
print("| run | method | " + " | ".join(f"`{t}`" for t in types) + " | FPR @ 0.01 |")
print("|---|---|" + "---|" * len(types) + "---|")
for c, r in reports.items():
    n = r["meta"]["anomalies"]["false_positive_windows"]
    for m in methods:
        cells = [f"{r[f'auroc_{m}_{t}']:.3f}" for t in types]
        cells = [f"**{v}**" if float(v) >= 0.95 else v for v in cells]
        print(f"| `{c}` | {m} | " + " | ".join(cells) + f" | {r[f'false_positive_rate_{m}']:.4f} (n = {n}) |")
loc = {c: r for c, r in reports.items() if any(k.startswith("localisation_") for k in r)}
if loc:
    print("\nLocalisation: the fraction of injected windows whose peak per-step score falls inside the injected stretch:\n")
    print("| run | method | " + " | ".join(f"`{t}`" for t in types) + " |")
    print("|---|---|" + "---|" * len(types))
    for c, r in loc.items():
        for m in methods:
            print(f"| `{c}` | {m} | " + " | ".join(f"{r[f'localisation_{m}_{t}']:.2f}" for t in types) + " |")
PY
