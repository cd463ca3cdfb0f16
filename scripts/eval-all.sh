#!/usr/bin/env bash
# Runs `neurogen eval` on every shipped config's run under runs/ and prints the README's
# evaluation table (markdown). Train first: `neurogen train configs/<name>.toml`.
#   bash scripts/eval-all.sh [path/to/neurogen]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/neurogen}
for cfg in configs/*.toml; do
  name=$(basename "$cfg" .toml)
  if [ -d "runs/$name" ]; then
    start=$(date +%s%N)
    "$bin" eval "runs/$name" -q
    echo "$name $(( ($(date +%s%N) - start) / 1000000 ))" > "runs/$name/eval/ms.txt"
  else
    echo "skipping $name: no runs/$name (train it first)" >&2
  fi
done
python3 - <<'PY'
import glob, json, os
def f(r, k, fmt="{:.3f}"):
    """The metric, and its real-vs-real floor in brackets when the report has one."""
    if k not in r:
        return "—"
    out = fmt.format(r[k])
    if k + "_floor" in r:
        out += " (" + fmt.format(r[k + "_floor"]) + ")"
    return out
print("Each cell: value (real-vs-real floor).")
print()
print("| config | model | PSD distance (dB) | rate error (Hz) | Fano error | MMD² | MMD p | C2ST AUC | discriminative score | likelihood on test | latent R² | memorisation | eval time |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob("runs/*/eval/report.json")):
    name = path.split("/")[1]
    if not os.path.exists(f"configs/{name}.toml"):
        continue
    r = json.load(open(path))
    m = r["meta"]
    bound = m.get("likelihood", {}).get("bound", "") if isinstance(m.get("likelihood"), dict) else ""
    if "neg_log_likelihood" in r and bound.startswith("vlb"):
        ll = f"VLB {r['neg_log_likelihood']:.1f} ({r['bits_per_dim']:.3f} bits/dim)"
    elif "neg_log_likelihood" in r:
        ll = f"NLL {r['neg_log_likelihood']:.1f} ({r['bits_per_dim']:.3f} bits/dim)"
    elif "neg_elbo" in r:
        k = [x for x in r if x.startswith("neg_iwae_k")][0]
        ll = f"−ELBO {r['neg_elbo']:.1f}, −IWAE {r[k]:.1f}"
    else:
        ll = "— (GAN)"
    if "bits_per_spike" in r:
        ll += f"; {r['bits_per_spike']:.3f} bits/spike"
    secs = int(open(f"runs/{name}/eval/ms.txt").read().split()[1]) / 1000
    print(f"| `{name}` | {m.get('model', '?')} | {f(r, 'psd_db_distance', '{:.2f}')} | {f(r, 'rate_abs_error_hz', '{:.2f}')} "
          f"| {f(r, 'fano_abs_error', '{:.3f}')} | {f(r, 'mmd2', '{:.4f}')} | {f(r, 'mmd_p_value')} | {f(r, 'c2st_auc')} "
          f"| {f(r, 'discriminative_score')} | {ll} | {f(r, 'latent_r2')} "
          f"| {f(r, 'memorisation_ratio', '{:.2f}')} | {float(secs):.1f} s |")
PY
