#!/usr/bin/env python3
"""The response of a stimulus-driven Lorenz run to a pulse, against the simulator's truth.

    scripts/stimulus-response.py RUN_DIR [--on A:B] [-n N] [--neurogen BIN]

Writes two stimuli as long as the run's window: a pulse over bins [A, B) (default: the run's
`stim_bins` from bin `window // 4`) and no stimulus; samples N (default 500) responses to each
from seed 0, so both see the same latents and noise; and prints, over the pulse, the mean count
of the driven (even-numbered) and undriven (odd-numbered) neurons under the pulse divided by the
same under no stimulus. The simulator's truth is exp(stim_gain) (3 by default) and 1.
Needs numpy.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import tomllib

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--on", help="pulse bins A:B")
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--neurogen", default="neurogen")
    a = p.parse_args()
    exp = tomllib.loads((a.run_dir / "experiment.toml").read_text())
    data = exp["data"]
    if data.get("source") != "lorenz_spikes" or data.get("inputs") != ["stim"]:
        print(f"{a.run_dir}: not a run on lorenz_spikes with inputs = [\"stim\"]", file=sys.stderr)
        return 2
    window = data["window"]
    if a.on:
        lo, hi = (int(v) for v in a.on.split(":"))
    else:
        lo = window // 4
        hi = lo + data["stim_bins"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        counts = {}
        for name, value in (("pulse", 1.0), ("none", 0.0)):
            u = np.zeros((1, window), np.float32)
            u[0, lo:hi] = value
            np.save(tmp / f"{name}.npy", u)
            out = tmp / f"{name}-samples.npy"
            subprocess.run(
                [a.neurogen, "sample", str(a.run_dir), "--inputs", str(tmp / f"{name}.npy"),
                 "-n", str(a.n), "-o", str(out), "-q"],
                check=True,
            )
            counts[name] = np.load(out)[:, :, lo:hi].mean(axis=(0, 2))  # per neuron
    gain = np.exp(data["stim_gain"])
    pulse, none = counts["pulse"], counts["none"]
    result = {
        "run": str(a.run_dir),
        "pulse_bins": [lo, hi],
        "windows": a.n,
        "driven_gain": float(pulse[0::2].sum() / none[0::2].sum()),
        "undriven_gain": float(pulse[1::2].sum() / none[1::2].sum()),
        "truth_driven": float(gain),
        "truth_undriven": 1.0,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
