"""Makes assets/data/motor-imagery-demo.edf, the recording configs/vae-edf.toml trains on.

    python3 -m pip install pyedflib==0.1.42 numpy
    python3 assets/data/make_demo.py

Four EEG channels (C3, Cz, C4, Pz) at 128 Hz for 300 s, written by pyedflib as EDF+C in µV:
a 10 Hz alpha rhythm of slowly varying amplitude on 1/f background and white noise. Every
4 s an event "769" (left hand) or "770" (right hand) is annotated; from 0.5 to 2.5 s after it,
alpha over the opposite hemisphere drops by 60 % (event-related desynchronisation), so
epochs around the events differ by label.
"""

import datetime
import os

import numpy as np
import pyedflib

fs, dur = 128, 300
n = fs * dur
rng = np.random.default_rng(2024)
t = np.arange(n) / fs


def pink(n):
    f = np.fft.rfftfreq(n, 1 / fs)
    spec = rng.normal(size=f.size) + 1j * rng.normal(size=f.size)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / x.std()


names = ["C3", "Cz", "C4", "Pz"]
alpha_gain = np.ones((4, n))
events = []
for k, onset in enumerate(np.arange(2.0, dur - 4.0, 4.0)):
    code = "769" if rng.random() < 0.5 else "770"
    events.append((float(onset), code))
    a, b = int((onset + 0.5) * fs), int((onset + 2.5) * fs)
    side = 2 if code == "769" else 0  # left hand → C4 (right hemisphere), right hand → C3
    alpha_gain[side, a:b] = 0.4

phase = 2 * np.pi * 10 * t + np.cumsum(rng.normal(0, 0.05, n))
envelope = 1 + 0.3 * np.sin(2 * np.pi * 0.1 * t)
signals = []
for c in range(4):
    x = 20 * envelope * alpha_gain[c] * np.sin(phase + 0.3 * c)
    x += 8 * pink(n) + 2 * rng.normal(size=n)
    signals.append(x)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "motor-imagery-demo.edf")
w = pyedflib.EdfWriter(path, 4, file_type=pyedflib.FILETYPE_EDFPLUS)
w.setSignalHeaders([
    dict(label=l, dimension="uV", sample_frequency=fs, physical_min=-200, physical_max=200,
         digital_min=-32768, digital_max=32767, transducer="AgAgCl electrode", prefilter="")
    for l in names
])
w.setStartdatetime(datetime.datetime(2024, 1, 1, 9, 0, 0))
w.writeSamples(signals)
for onset, code in events:
    w.writeAnnotation(onset, 4.0, code)
w.close()
print("wrote", path, os.path.getsize(path), "bytes,", len(events), "events")
