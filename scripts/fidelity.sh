#!/usr/bin/env bash
# Reproduces the README's "Fidelity beside the floor" tables: each fidelity change against the
# behaviour it replaces, and the WaveNet on every data set, each run evaluated beside its
# real-vs-real floor, then every family on every data set (the README's fidelity table, printed
# by scripts/fidelity_table.py). Runs go to runs/fidelity/<name>; about 3 hours on a 2-core VM.
#   bash scripts/fidelity.sh [path/to/neurogen]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/neurogen}
out=runs/fidelity
mkdir -p "$out"
run() { # name config [--set ...]
  local name=$1 cfg=$2; shift 2
  if [ ! -f "$out/$name/eval/report.json" ]; then
    local s=$(date +%s)
    "$bin" train "configs/$cfg.toml" --out "$out/$name" -q "$@"
    echo $(( $(date +%s) - s )) > "$out/$name/train_s.txt"
    "$bin" eval "$out/$name" -q
  fi
}
for c in vae-kuramoto vae-neural-mass vae-edf; do
  run "$c" "$c"
  run "$c-ar1" "$c" --set 'model.likelihood="gaussian_ar1"'
done
for c in vae-kuramoto vae-edf; do
  run "$c-ar1-lp" "$c" --set 'model.likelihood="gaussian_ar1"' --set 'model.prior="learned"'
done
run vae-lorenz vae-lorenz
run vae-lorenz-lp vae-lorenz --set 'model.prior="learned"'
run gan-kuramoto-transposed gan-kuramoto --set 'model.upsample="transposed"'
run gan-kuramoto gan-kuramoto
run realnvp-lorenz-best realnvp-lorenz --set 'train.keep_best="valid_loss"'
run realnvp-lorenz-wd1.0 realnvp-lorenz --set train.weight_decay=1.0
[ -f "$out/realnvp-lorenz-best/eval-best/report.json" ] ||
  "$bin" eval "$out/realnvp-lorenz-best" --best -o "$out/realnvp-lorenz-best/eval-best" -q
for v in standard learned; do
  run "latent-ode-lorenz-$v" latent-ode-lorenz --set "model.prior=\"$v\""
done
for c in wavenet-kuramoto wavenet-neural-mass wavenet-edf wavenet-lorenz wavenet-izhikevich; do
  run "$c" "$c"
done
for c in wavenet-kuramoto wavenet-neural-mass wavenet-edf wavenet-lorenz; do
  # The same weights sampled from an empty past.
  [ -f "$out/$c/eval-burn-in-0/report.json" ] ||
    "$bin" eval "$out/$c" --burn-in 0 -o "$out/$c/eval-burn-in-0" -q
done
# The WaveNets as they shipped before the cosine schedule and burn-in (constant rate, fewer
# steps for Kuramoto, the neural mass and the Lorenz spikes; wavenet-izhikevich kept its config).
run wavenet-kuramoto-constant wavenet-kuramoto --set 'train.lr_schedule="constant"' \
  --set train.steps=2000 --set model.burn_in=0
run wavenet-neural-mass-constant wavenet-neural-mass --set 'train.lr_schedule="constant"' \
  --set train.steps=1500 --set model.burn_in=0
run wavenet-edf-constant wavenet-edf --set 'train.lr_schedule="constant"' --set model.burn_in=0
run wavenet-lorenz-constant wavenet-lorenz --set 'train.lr_schedule="constant"' \
  --set train.steps=2000 --set model.burn_in=0
# The cosine schedule where it did not help.
run wavenet-izhikevich-cosine wavenet-izhikevich --set 'train.lr_schedule="cosine"'
# The VAE-GAN against the VAE it extends (AR(1) residuals) on every continuous data set.
run vae-gan-edf vae-gan-edf
run vae-gan-kuramoto vae-gan-kuramoto
run vae-gan-neural-mass vae-neural-mass --backend flex --set 'model.likelihood="gaussian_ar1"' \
  --set model.adversarial.weight=0.05
# Dropout in the flow's conditioners.
run realnvp-lorenz realnvp-lorenz
run realnvp-lorenz-dropout0.2 realnvp-lorenz --set model.dropout=0.2
# Every family on every data set, as shipped (the runs above with the same name are reused).
for d in kuramoto neural-mass edf lorenz izhikevich; do
  for f in vae gan realnvp latent-ode diffusion wavenet; do
    run "$f-$d" "$f-$d"
  done
done
python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def cell(r, k, fmt="{:.2f}"):
    if k not in r:
        return "—"
    s = fmt.format(r[k])
    return s + (" (" + fmt.format(r[k + "_floor"]) + ")" if k + "_floor" in r else "")
print("| run | PSD dB | rate error Hz | Fano error | C2ST AUC | discriminative score | MMD p | memorisation | likelihood on test | train s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob(f"{out}/*/eval*/report.json")):
    run = path.split("/")[-3] + {"eval": "", "eval-best": " --best",
                                 "eval-burn-in-0": " --burn-in 0"}.get(path.split("/")[-2], "")
    r = json.load(open(path))
    if "neg_log_likelihood" in r:
        ll = f"NLL {r['neg_log_likelihood']:.1f}"
    elif "neg_elbo" in r:
        k = [x for x in r if x.startswith("neg_iwae_k") and "floor" not in x][0]
        ll = f"−ELBO {r['neg_elbo']:.1f}, −IWAE {r[k]:.1f}"
    else:
        ll = "—"
    if "bits_per_spike" in r:
        ll += f"; {r['bits_per_spike']:.3f} bits/spike"
    t = open(os.path.join(os.path.dirname(os.path.dirname(path)), "train_s.txt")).read().strip()
    print(f"| `{run}` | {cell(r, 'psd_db_distance')} | {cell(r, 'rate_abs_error_hz')} | {cell(r, 'fano_abs_error', '{:.3f}')} "
          f"| {cell(r, 'c2st_auc', '{:.3f}')} | {cell(r, 'discriminative_score', '{:.3f}')} | {cell(r, 'mmd_p_value', '{:.3f}')} "
          f"| {cell(r, 'memorisation_ratio')} | {ll} | {t} |")
PY
python3 scripts/fidelity_table.py "$out"
