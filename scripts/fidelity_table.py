#!/usr/bin/env python3
"""Prints the README's fidelity table: every family on every shipped data set, each metric
beside its real-vs-real floor, and which of issue #19's targets the run meets.

    python3 scripts/fidelity_table.py [runs/fidelity]

Reads <dir>/<family>-<data>/eval/report.json and train_s.txt (written by scripts/fidelity.sh);
a cell without a run prints as "not run".
"""
import json
import os
import sys

DATA = ["kuramoto", "neural-mass", "edf", "lorenz", "izhikevich"]
FAMILIES = ["vae", "gan", "realnvp", "latent-ode", "diffusion", "wavenet"]
SPIKES = {"lorenz", "izhikevich"}


def cell(r, k, fmt):
    if k not in r:
        return "—"
    s = fmt.format(r[k])
    return s + (" (" + fmt.format(r[k + "_floor"]) + ")" if k + "_floor" in r else "")


def targets(r, spikes):
    """Each target of the issue: (name, met) for the metrics the report has."""
    out = []

    def floor(k):
        return r.get(k + "_floor")

    if spikes:
        for k, name in [("rate_abs_error_hz", "rate"), ("fano_abs_error", "Fano")]:
            if k in r and floor(k) is not None:
                out.append((name, r[k] <= 1.5 * floor(k)))
    elif "psd_db_distance" in r and floor("psd_db_distance") is not None:
        out.append(("PSD", r["psd_db_distance"] <= 1.5 * floor("psd_db_distance")))
    if "c2st_auc" in r and floor("c2st_auc") is not None:
        out.append(("C2ST", r["c2st_auc"] <= max(0.70, floor("c2st_auc") + 0.05)))
    if "discriminative_score" in r and floor("discriminative_score") is not None:
        d = floor("discriminative_score")
        out.append(("disc", r["discriminative_score"] <= max(0.15, d + 0.05)))
    if "memorisation_ratio" in r:
        out.append(("mem", r["memorisation_ratio"] >= 0.9))
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "runs/fidelity"
    print("| data | family | PSD dB | rate error Hz | Fano error | C2ST AUC | discriminative "
          "| MMD p | memorisation | train s | targets met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    best = {}
    for d in DATA:
        for f in FAMILIES:
            run = os.path.join(root, f"{f}-{d}")
            path = os.path.join(run, "eval", "report.json")
            if not os.path.exists(path):
                print(f"| {d} | {f} | not run | | | | | | | | |")
                continue
            r = json.load(open(path))
            met = targets(r, d in SPIKES)
            n = sum(ok for _, ok in met)
            best[d] = max(best.get(d, (-1, "")), (n, f))
            secs = open(os.path.join(run, "train_s.txt")).read().strip()
            marks = " ".join(("✓" if ok else "✗") + name for name, ok in met)
            print(f"| {d} | `{f}-{d}` | {cell(r, 'psd_db_distance', '{:.2f}')} "
                  f"| {cell(r, 'rate_abs_error_hz', '{:.2f}')} | {cell(r, 'fano_abs_error', '{:.3f}')} "
                  f"| {cell(r, 'c2st_auc', '{:.3f}')} | {cell(r, 'discriminative_score', '{:.3f}')} "
                  f"| {cell(r, 'mmd_p_value', '{:.3f}')} | {cell(r, 'memorisation_ratio', '{:.2f}')} "
                  f"| {secs} | {n}/{len(met)}: {marks} |")
    print()
    for d in DATA:
        if d in best:
            n, f = best[d]
            print(f"- {d}: most targets met by `{f}-{d}` ({n})")


if __name__ == "__main__":
    main()
