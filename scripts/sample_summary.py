#!/usr/bin/env python3
"""Compare a sample file with the data it imitates (the README's sample-quality figures).

    scripts/sample_summary.py SAMPLES.npy DATA.npy

SAMPLES.npy comes from `neurogen sample`, DATA.npy from `neurogen data` on the same config;
the kind and sampling rate are read from SAMPLES.json. Counts: mean rate, Fano factor and the
correlation of per-neuron mean rates. Continuous: the peak of the mean Hann-windowed
periodogram and each band's mean power relative to the 14-17 Hz trough.
"""
import json
import sys
from pathlib import Path

import numpy as np


def main(samples_path, data_path):
    s, d = np.load(samples_path), np.load(data_path)
    meta = json.loads(Path(samples_path).with_suffix(".json").read_text())
    for name, x in (("data", d), ("samples", s)):
        print(f"{name}: shape {x.shape}")
    if meta["kind"] == "counts":
        for name, x in (("data", d), ("samples", s)):
            fano = x.var(axis=0).mean() / x.mean()
            print(f"{name}: mean {x.mean():.3f} per bin, Fano {fano:.3f}")
        r = np.corrcoef(d.mean(axis=(0, 2)), s.mean(axis=(0, 2)))[0, 1]
        print(f"per-neuron mean-rate correlation {r:.3f}")
    else:
        t = s.shape[-1]
        f = np.fft.rfftfreq(t, 1 / meta["sfreq"])
        for name, x in (("data", d), ("samples", s)):
            p = (np.abs(np.fft.rfft(x * np.hanning(t), axis=-1)) ** 2).mean(axis=(0, 1))
            band = lambda lo, hi: p[(f >= lo) & (f <= hi)].mean()
            trough = band(14, 17)
            print(f"{name}: PSD peak {f[np.argmax(p[2:]) + 2]:.1f} Hz, "
                  f"8-12 Hz {band(8, 12) / trough:.1f}x, 18-25 Hz {band(18, 25) / trough:.1f}x the 14-17 Hz trough")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
