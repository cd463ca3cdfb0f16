"""neurogen models in PyTorch: load what `neurogen export` writes and generate as neurogen does.

    neurogen export runs/vae-lorenz -o vae.safetensors   # vae.safetensors, vae.json, vae.reference.safetensors

    import neurogen_torch as nt
    model = nt.load("vae.safetensors")                  # an nn.Module in eval mode, float32
    z = torch.randn(16, model.noise_dim)                  # standard normals, as neurogen draws them
    x = model.generate(z)                                 # [16, channels, time], normalised units
    x = nt.to_physical(x, model.desc)                     # the run's units (µV, counts)

`generate(z, y=None)` returns what neurogen's `generate` returns before observation noise: the
Gaussian mean, the Poisson rate, or a flow's, GAN's, diffusion model's or WaveNet's samples
themselves (the last two consume all their randomness from `z`). `y` is one-hot labels
`[n, classes]` for conditional runs (labels in the order of `model.desc["label_names"]`).

    python scripts/neurogen_torch.py vae.safetensors     # checks the port against the export's
                                                         # reference draws (exit 1 if it differs)

One class per family, each a transcription of the Rust model's `generate` (crates/neurogen-models);
names and shapes of parameters are those of the export (PyTorch conventions: Linear weights
[out, in], Conv1d weights [out, in, kernel]), loaded with `load_state_dict(strict=True)`.
Needs torch, numpy and safetensors.
"""

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

FAMILIES = {}

# A port agrees with neurogen when |torch - neurogen| <= ATOL + RTOL * |neurogen| everywhere.
ATOL = 1e-5
RTOL = 1e-5


def register(kind):
    """Class decorator: the PyTorch model of neurogen's `[model] kind`."""

    def wrap(cls):
        FAMILIES[kind] = cls
        return cls

    return wrap


def description(path):
    """model.json beside a `.safetensors` export."""
    return json.loads(Path(path).with_suffix(".json").read_text())


def load(path):
    """The model of an export, with its weights, in eval mode."""
    desc = description(path)
    family = desc["family"]
    if family not in FAMILIES:
        raise ValueError(f"{path}: family {family!r} has no PyTorch port here ({', '.join(sorted(FAMILIES))})")
    model = FAMILIES[family](desc)
    model.load_state_dict(load_file(str(path)), strict=True)
    model.desc = desc
    return model.eval()


def to_physical(x, desc):
    """Normalised windows `[n, channels, time]` in the run's physical units."""
    norm = desc["normalization"]
    mean = torch.tensor(norm["mean"], dtype=x.dtype).view(1, -1, 1)
    std = torch.tensor(norm["std"], dtype=x.dtype).view(1, -1, 1)
    return x * std + mean


def check(path):
    """(max |difference|, worst allowed) of the port against the export's reference draws."""
    model = load(path)
    ref = load_file(str(Path(path).with_suffix(".reference.safetensors")))
    with torch.no_grad():
        out = model.generate(ref["z"], ref.get("y"))
    want = ref["mean"]
    if tuple(out.shape) != tuple(want.shape):
        raise ValueError(f"{path}: generate gave shape {tuple(out.shape)}, neurogen {tuple(want.shape)}")
    diff = (out - want).abs()
    excess = (diff - (ATOL + RTOL * want.abs())).max().item()
    return diff.max().item(), excess


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    bad = 0
    for path in argv[1:]:
        worst, excess = check(path)
        ok = excess <= 0
        bad += not ok
        print(f"{path}: {description(path)['family']}: max |torch - neurogen| = {worst:.3e} "
              f"({'agrees' if ok else 'DIFFERS'} within {ATOL:g} + {RTOL:g}·|x|)")
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------

# VAE and GAN (vae.rs, gan.rs, conv.rs, mlp.rs, condition.rs)

def _leaky_relu(x, slope=0.2):
    # neurogen's form (conv.rs `leaky_relu`), not F.leaky_relu: same function, same rounding.
    return x * slope + F.relu(x) * (1.0 - slope)


class _Mlp(nn.Module):
    """Linear layers between consecutive `sizes`, each followed by ReLU (mlp.rs `Mlp`)."""

    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for layer in self.layers:
            x = F.relu(layer(x))
        return x


class _MlpHead(nn.Module):
    """An `_Mlp` then a linear output layer (mlp.rs `MlpHead`)."""

    def __init__(self, sizes, d_out):
        super().__init__()
        self.body = _Mlp(sizes)
        self.out = nn.Linear(sizes[-1] if sizes else d_out, d_out)

    def forward(self, x):
        return self.out(self.body(x))


class _SnConv1d(nn.Module):
    """A kernel-4, stride-2 encoder/critic convolution (spectral.rs `SnConv1d`); `u` is only the
    power-iteration state, exported with the weights, unused when spectral norm is off."""

    def __init__(self, c_in, c_out, k=4, stride=2, padding=1):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c_out, c_in, k))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.u = nn.Parameter(torch.zeros(c_out))
        self.stride, self.padding = stride, padding

    def out_len(self, t):
        return max(t + 2 * self.padding - self.weight.shape[2], 0) // self.stride + 1


class _ConvDown(nn.Module):
    """Strided convolutions to a flat feature vector (conv.rs `ConvDown`): only its size matters
    to `generate`; the layers are here so the export loads strictly."""

    def __init__(self, c_in, time, channels):
        super().__init__()
        self.layers = nn.ModuleList()
        c, t = c_in, time
        for c_out in channels:
            self.layers.append(_SnConv1d(c, c_out))
            t, c = self.layers[-1].out_len(t), c_out
        self.features = c * t


class _ConvUp(nn.Module):
    """Linear to `[channels[0], t0]`, then layers that each double time (conv.rs `ConvUp`)."""

    def __init__(self, d_in, channels, c_out, time, upsample):
        super().__init__()
        if upsample not in ("transposed", "nearest"):
            raise ValueError(f"upsample {upsample!r}: expected 'transposed' or 'nearest'")
        n = max(len(channels), 1)
        self.t0 = max(-(-time // (1 << n)), 1)
        self.c0 = channels[0] if channels else c_out
        self.time = time
        sizes = (list(channels) or [self.c0]) + [c_out]
        pairs = list(zip(sizes, sizes[1:]))
        self.input = nn.Linear(d_in, self.c0 * self.t0)
        # Both lists exist so their names match burn's; only one is filled.
        self.layers = nn.ModuleList(
            nn.ConvTranspose1d(a, b, 4, stride=2, padding=1) for a, b in pairs if upsample == "transposed")
        self.resize = nn.ModuleList(
            nn.Conv1d(a, b, 3, padding=1) for a, b in pairs if upsample == "nearest")

    def forward(self, z):
        h = _leaky_relu(self.input(z)).reshape(z.shape[0], self.c0, self.t0)
        convs = list(self.layers) or list(self.resize)
        for i, conv in enumerate(convs):
            if isinstance(conv, nn.Conv1d):
                h = h.repeat_interleave(2, dim=2)  # nearest-neighbour resize, then kernel 3
            h = conv(h)
            if i < len(convs) - 1:
                h = _leaky_relu(h)
        return h[:, :, : self.time]


class _LabelEmbedding(nn.Module):
    """One-hot labels through a bias-free linear table (condition.rs `LabelEmbedding`)."""

    def __init__(self, classes, dim):
        super().__init__()
        self.table = nn.Linear(classes, dim, bias=False)
        self.dim = dim


def _with_label(h, embed, y):
    # No labels for a conditional model reads as "no condition": a zero embedding.
    if embed is None:
        return h
    e = embed.table(y.to(h.dtype)) if y is not None else h.new_zeros(h.shape[0], embed.dim)
    return torch.cat([h, e], dim=1)


class _LearnedPrior(nn.Module):
    """N(mean, exp(logvar)) over z (likelihood.rs `LearnedPrior`)."""

    def __init__(self, dim):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.logvar = nn.Parameter(torch.zeros(dim))

    def draw(self, eps):
        plv = self.logvar.clamp(-8.0, 4.0)
        return self.mean.unsqueeze(0) + (plv * 0.5).exp().unsqueeze(0) * eps


@register("vae")
class Vae(nn.Module):
    """neurogen's VAE (vae.rs): `generate` decodes prior draws to the Gaussian / AR(1) mean or
    the Poisson rate."""

    def __init__(self, desc):
        super().__init__()
        m, w = desc["model"], desc["window"]
        c, t = w["channels"], w["time"]
        self.channels, self.time = c, t
        self.latent_dim = self.noise_dim = m.get("latent_dim", 16)
        hidden = list(m.get("hidden", [256, 128]))
        arch = m.get("arch", "mlp")
        lik = m.get("likelihood") or ("poisson" if w.get("kind") == "counts" else "gaussian")
        if lik not in ("gaussian", "gaussian_ar1", "poisson"):
            raise ValueError(f"vae: likelihood {lik!r} has no port (gaussian, gaussian_ar1, poisson)")
        self.poisson = lik == "poisson"
        prior = m.get("prior", "standard")
        if prior not in ("standard", "learned"):
            raise ValueError(f"vae: prior {prior!r} has no port (standard, learned)")
        classes = len(desc.get("label_names") or [])
        e = m.get("embed_dim", 16) if m.get("conditional", False) and classes > 0 else 0
        l = self.latent_dim
        if arch == "mlp":
            self.encoder = _Mlp([c * t] + hidden)
            features = ([c * t] + hidden)[-1]
            self.decoder = _MlpHead([l + e] + hidden[::-1], c * t)
        elif arch == "conv":
            self.encoder = _ConvDown(c, t, hidden)
            features = self.encoder.features
            self.decoder = _ConvUp(l + e, hidden[::-1], c, t, "transposed")
        else:
            raise ValueError(f"vae: arch {arch!r} has no port (mlp, conv)")
        self.arch = arch
        self.mu = nn.Linear(features + e, l)
        self.logvar = nn.Linear(features + e, l)
        self.log_sigma = nn.Parameter(torch.zeros(c))
        self.ar = nn.Parameter(torch.zeros(c)) if lik == "gaussian_ar1" else None
        self.prior = _LearnedPrior(l) if prior == "learned" else None
        self.embed = _LabelEmbedding(classes, e) if e else None

    def decode(self, z, y=None):
        """Gaussian means or Poisson log-rates (clamped as neurogen bounds them), [n, c, t]."""
        h = _with_label(z, self.embed, y)
        out = self.decoder(h)
        if self.arch == "mlp":
            out = out.reshape(z.shape[0], self.channels, self.time)
        return out.clamp(-15.0, 8.0) if self.poisson else out

    def generate(self, z, y=None):
        if self.prior is not None:
            z = self.prior.draw(z)
        out = self.decode(z, y)
        return out.exp() if self.poisson else out


@register("gan")
class Gan(nn.Module):
    """neurogen's GAN generator (gan.rs `Generator`); the export holds only the generator (its
    moving average when the run kept one), so the critic, its spectral norm, the loss and `ema`
    need nothing here."""

    def __init__(self, desc):
        super().__init__()
        m, w = desc["model"], desc["window"]
        c, t = w["channels"], w["time"]
        self.channels, self.time = c, t
        self.noise_dim = m.get("noise_dim", 64)
        hidden = list(m.get("hidden", [128, 64, 32]))
        classes = len(desc.get("label_names") or [])
        e = m.get("embed_dim", 16) if m.get("conditional", False) and classes > 0 else 0
        # Trained on dequantised counts k + u: samples are floored back to counts.
        self.counts = w.get("kind") == "counts"
        arch = m.get("arch", "conv")
        if arch == "conv":
            self.body = _ConvUp(self.noise_dim + e, hidden, c, t, m.get("upsample", "nearest"))
        elif arch == "mlp":
            self.body = _MlpHead([self.noise_dim + e] + hidden, c * t)
        else:
            raise ValueError(f"gan: arch {arch!r} has no port (conv, mlp)")
        self.arch = arch
        self.embed = _LabelEmbedding(classes, e) if e else None

    def generate(self, z, y=None):
        x = self.body(_with_label(z, self.embed, y))
        if self.arch == "mlp":
            x = x.reshape(z.shape[0], self.channels, self.time)
        return x.clamp_min(0.0).floor() if self.counts else x


# RealNVP and latent ODE (flow.rs, latent_ode.rs, ode.rs)

def _f32(v):
    """`v as f32` in Rust: scalars that neurogen multiplies tensors by are rounded to f32 first."""
    return float(torch.tensor(v, dtype=torch.float32))


class _Embedding(nn.Module):
    """neurogen's LabelEmbedding: a bias-free Linear read with one-hot rows (`embed.table`)."""

    def __init__(self, classes, dim):
        super().__init__()
        self.table = nn.Linear(classes, dim, bias=False)
        self.dim = dim

    def context(self, y, n):
        # A conditional model given no labels reads "no condition": a zero embedding.
        if y is None:
            return torch.zeros(n, self.dim, dtype=self.table.weight.dtype)
        return self.table(y.to(self.table.weight.dtype))


class _Layers(nn.Module):
    """A `layers` list of Linear maps (neurogen's Mlp, and the latent ODE's Dynamics)."""

    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


class _ActNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def inverse(self, z):
        return z * self.log_scale.exp() + self.loc


class _Coupling(nn.Module):
    """Affine coupling: the first (even layers) or second half conditions the other half."""

    def __init__(self, dim, context, hidden, first, bound):
        super().__init__()
        self.half, self.first, self.bound = dim // 2, first, _f32(bound)
        d_cond = self.half if first else dim - self.half
        d_trans = dim - d_cond
        sizes = [d_cond + context] + list(hidden)
        self.net = _Layers(sizes)
        self.out = nn.Linear(sizes[-1], 2 * d_trans)

    def inverse(self, z, ctx):
        a, b = z[:, : self.half], z[:, self.half :]
        cond, zb = (a, b) if self.first else (b, a)
        h = cond if ctx is None else torch.cat([cond, ctx], 1)
        for layer in self.net.layers:
            h = F.relu(layer(h))
        h = self.out(h)
        d = h.shape[1] // 2
        s = torch.tanh(h[:, :d]) * self.bound  # log-scales bounded by scale_bound
        xb = zb * s.exp() + h[:, d:]
        return torch.cat([cond, xb] if self.first else [xb, cond], 1)


@register("realnvp")
class RealNVP(nn.Module):
    """RealNVP over flattened windows; `generate` runs the flow backwards from z."""

    def __init__(self, desc):
        super().__init__()
        m, w = desc["model"], desc["window"]
        self.channels, self.time = w["channels"], w["time"]
        dim = self.channels * self.time
        self.noise_dim = dim
        self.counts = w["kind"] == "counts"
        classes = len(desc.get("label_names", []))
        e = m["embed_dim"] if m.get("conditional") and classes > 0 else 0
        if e:
            self.embed = _Embedding(classes, e)
        else:
            self.embed = None
        n = m["n_layers"]
        self.norms = nn.ModuleList(_ActNorm(dim) for _ in range(n) if m["actnorm"])
        self.couplings = nn.ModuleList(
            _Coupling(dim, e, m["hidden"], k % 2 == 0, m["scale_bound"]) for k in range(n)
        )

    def generate(self, z, y=None):
        n = z.shape[0]
        ctx = None if self.embed is None else self.embed.context(y, n)
        h = z.float()
        for k in reversed(range(len(self.couplings))):
            h = self.couplings[k].inverse(h, ctx)
            if self.norms:
                h = self.norms[k].inverse(h)
        x = h.reshape(n, self.channels, self.time)
        # Dequantised counts k + u with u in [0, 1): the count is the floor.
        return x.clamp_min(0.0).floor() if self.counts else x


# Dormand-Prince 5(4) tableau, as neurogen's ode.rs.
_DP_C = [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0]
_DP_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
]
_DP_B5 = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_DP_B4 = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]


def _weighted(k, w, hf):
    """h * sum(w_i k_i) over the non-zero weights, each scalar rounded as f32 like neurogen."""
    acc = None
    for ki, wi in zip(k, w):
        if wi != 0.0:
            term = ki * _f32(_f32(wi) * hf)
            acc = term if acc is None else acc + term
    return acc if acc is not None else torch.zeros_like(k[0])


def _rms(x):
    # neurogen reads an f32 mean back to the host and takes the root in f64.
    return math.sqrt(float(x.square().mean()))


def odeint(f, y0, ts, solver, step=None, rtol=1e-3, atol=1e-4, max_steps=1000):
    """neurogen's odeint: the state at every time of `ts` (the first is y0); the step control
    of dopri5 is host-side f64 arithmetic on f32 error norms, shared by the whole batch."""
    if not ts or any(not math.isfinite(t) for t in ts) or any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"output times must be finite and strictly increasing, got {ts}")
    out = [y0]
    if solver == "dopri5":
        scale_of = lambda a, b: torch.maximum(a.abs(), b.abs()) * _f32(rtol) + _f32(atol)
        t, y = ts[0], y0
        k1 = f(t, y)
        # Initial step from Hairer, Norsett & Wanner, II.4.
        scale = scale_of(y, y)
        d0, d1 = _rms(y / scale), _rms(k1 / scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        k2 = f(t + h0, y + k1 * _f32(h0))
        d2 = _rms((k2 - k1) / scale) / h0
        dm = max(d1, d2)
        h1 = max(h0 * 1e-3, 1e-6) if dm <= 1e-15 else (0.01 / dm) ** (1 / 5)
        h = min(100 * h0, h1)
        if not math.isfinite(h):
            raise FloatingPointError(f"the ODE state became non-finite at t = {t}")
        taken = 0  # steps accepted + rejected, against max_steps for the whole call
        diff = [a - b for a, b in zip(_DP_B5, _DP_B4)]
        for t1 in ts[1:]:
            while t < t1:
                if taken >= max_steps:
                    raise FloatingPointError(f"dopri5 needed more than max_steps = {max_steps} steps (t = {t})")
                hs = min(h, t1 - t)
                last = hs >= t1 - t
                hf = _f32(hs)
                k = [k1]
                for i in range(1, 6):
                    incr = None
                    for a, ki in zip(_DP_A[i], k):
                        if a != 0.0:
                            term = ki * _f32(a * hs)
                            incr = term if incr is None else incr + term
                    k.append(f(t + _DP_C[i] * hs, y if incr is None else y + incr))
                y_new = y + _weighted(k, _DP_B5[:6], hf)
                k7 = f(t + hs, y_new)
                err = _rms(_weighted(k + [k7], diff, hf) / scale_of(y, y_new))
                if not math.isfinite(err):
                    raise FloatingPointError(f"the ODE state became non-finite at t = {t}")
                factor = 10.0 if err == 0.0 else min(max(0.9 * err ** (-1 / 5), 0.2), 10.0)
                taken += 1
                if err <= 1.0:
                    t = t1 if last else t + hs
                    y, k1 = y_new, k7
                    # A step cut short to land on t1 says nothing about the natural step size.
                    if not last or factor < 1.0:
                        h = hs * factor
                else:
                    h = hs * factor
            out.append(y)
        return out
    if solver not in ("euler", "midpoint", "rk4"):
        raise ValueError(f"solver {solver!r} has no PyTorch port (euler, midpoint, rk4, dopri5)")
    y = y0
    for t0, t1 in zip(ts, ts[1:]):
        n = max(math.ceil((t1 - t0) / step), 1) if step else 1
        h = (t1 - t0) / n
        hf = _f32(h)
        for i in range(n):
            t = t0 + i * h
            if solver == "euler":
                y = y + f(t, y) * hf
            elif solver == "midpoint":
                k1 = f(t, y)
                y = y + f(t + h / 2, y + k1 * (hf / 2)) * hf
            else:
                k1 = f(t, y)
                k2 = f(t + h / 2, y + k1 * (hf / 2))
                k3 = f(t + h / 2, y + k2 * (hf / 2))
                k4 = f(t + h, y + k3 * hf)
                y = y + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * _f32(hf / 6)
        out.append(y)
    return out


class _Gru(nn.Module):
    """The encoder's GRU cell: only its weights matter to `generate`."""

    def __init__(self, d_in, size):
        super().__init__()
        self.input = nn.Linear(d_in, 3 * size)
        self.hidden = nn.Linear(size, 3 * size)


def _tanh(x):
    # neurogen's latent ODE uses tanh(x) = 2 sigmoid(2x) - 1 (cheaper on its CPU backend).
    return torch.sigmoid(x * 2.0) * 2.0 - 1.0


@register("latent_ode")
class LatentODE(nn.Module):
    """Latent ODE: z0 (a prior draw) carried through the window by the learned vector field,
    read out linearly at every sample. The encoder's weights are loaded but unused here."""

    def __init__(self, desc):
        super().__init__()
        m, w = desc["model"], desc["window"]
        c, hdim, l = w["channels"], m["rnn_hidden"], m["latent_dim"]
        self.channels, self.time, self.latent_dim = c, w["time"], l
        self.inputs = len(w.get("input_names") or [])
        classes = len(desc.get("label_names", []))
        e = m["embed_dim"] if m.get("conditional") and classes > 0 else 0
        likelihood = m.get("likelihood") or ("poisson" if w["kind"] == "counts" else "gaussian")
        if likelihood not in ("gaussian", "poisson"):
            raise ValueError(f"latent ODE likelihood {likelihood!r} has no PyTorch port (gaussian, poisson)")
        self.poisson = likelihood == "poisson"
        if m.get("encoder", "rnn") not in ("rnn", "odernn"):
            raise ValueError(f"latent ODE encoder {m['encoder']!r} is unknown (rnn, odernn)")
        prior = m.get("prior", "standard")
        if prior not in ("standard", "learned"):
            raise ValueError(f"latent ODE prior {prior!r} has no PyTorch port (standard, learned)")
        self.solver = m["solver"]
        if self.solver not in ("euler", "midpoint", "rk4", "dopri5"):
            raise ValueError(f"solver {self.solver!r} has no PyTorch port (euler, midpoint, rk4, dopri5)")
        self.step = m.get("step")
        self.rtol, self.atol, self.max_steps = m["rtol"], m["atol"], m["max_steps"]
        self.dt = m["time_scale"] / w["sfreq"]  # ODE time between samples, f64 as neurogen
        # Observed samples per window are drawn from the noise too when obs_keep < 1.
        self.noise_dim = l + self.time if m["obs_keep"] < 1.0 else l

        def field(dim, context):
            return _Layers([dim + context] + list(m["hidden"]) + [dim])

        self.gru = _Gru(2 * c, hdim)
        self.enc_dynamics = field(hdim, 0) if m.get("encoder", "rnn") == "odernn" else None
        self.head = nn.Linear(hdim, 2 * l)
        self.dynamics = field(l, e + self.inputs)
        self.readout = nn.Linear(l, c)
        self.feedthrough = nn.Linear(self.inputs, c, bias=False) if self.inputs else None
        self.log_sigma = nn.Parameter(torch.full((c,), math.log(m["sigma"])))
        self.prior = _LearnedPrior(l) if prior == "learned" else None
        self.initial_state = nn.Linear(e, hdim) if e else None
        self.embed = _Embedding(classes, e) if e else None

    def field(self, t, z, extra):
        h = z if extra is None else torch.cat([z, extra], 1)
        layers = self.dynamics.layers
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < len(layers) - 1:
                h = _tanh(h)
        return h

    def generate(self, z, y=None):
        z = z[:, : self.latent_dim].float()
        n = z.shape[0]
        if self.prior is not None:
            z = self.prior.draw(z)
        parts = []
        if self.embed is not None:
            parts.append(self.embed.context(y, n))
        if self.inputs:
            # generate holds exogenous inputs at 0 (their training mean): the field reads zeros
            # at every time, and the feedthrough adds nothing.
            parts.append(torch.zeros(n, self.inputs))
        extra = torch.cat(parts, 1) if parts else None
        ts = [i * self.dt for i in range(self.time)]
        try:
            zs = odeint(lambda t, s: self.field(t, s, extra), z, ts, self.solver,
                        self.step if self.step and self.step > 0 else None,
                        self.rtol, self.atol, self.max_steps)
        except FloatingPointError as err:
            # neurogen warns and returns NaNs (refused by its sampler) when a solve fails.
            print(f"latent ODE solve failed: {err}", file=sys.stderr)
            return torch.full((n, self.channels, self.time), float("nan"))
        out = self.readout(torch.stack(zs, 1)).transpose(1, 2)  # [n, channels, time]
        return out.clamp(-15.0, 8.0).exp() if self.poisson else out


# Diffusion and WaveNet (diffusion.rs, wavenet.rs)

def _affine(layer, x):
    """burn's Linear: the product, then the bias (not a fused addmm, whose rounding differs)."""
    y = x @ layer.weight.t()
    return y if layer.bias is None else y + layer.bias


def _normal_cdf(n):
    """Φ as neurogen computes it in f32 (how normals become uniforms)."""
    return (torch.erf(n * math.sqrt(0.5)) + 1.0) * 0.5


def _shift(x, d):
    """Time-major `[b, t, c]` delayed by d steps (advanced when d < 0), zeros past the ends."""
    t, k = x.shape[1], abs(d)
    if k == 0:
        return x
    if k >= t:
        return torch.zeros_like(x)
    z = x.new_zeros(x.shape[0], k, x.shape[2])
    return torch.cat([z, x[:, : t - k]], 1) if d > 0 else torch.cat([x[:, k:], z], 1)


def _label_modules(module, desc, width):
    """`embed.table` (one-hot → embedding, no bias) and `label` (embedding → width), when the
    export has them (a conditional run on labelled data)."""
    tensors = desc["tensors"]
    if "embed.table.weight" not in tensors:
        module.embed = module.label = None
        return
    dim, classes = tensors["embed.table.weight"]
    module.embed = nn.Module()
    module.embed.table = nn.Linear(classes, dim, bias=False)
    module.label = nn.Linear(dim, width)


def _label_term(module, y, n):
    """The label's term (zeros as the embedding of "no label"); None for an unconditional model."""
    if module.embed is None:
        return None
    if y is None:
        e = torch.zeros(n, module.embed.table.weight.shape[0])
    else:
        e = _affine(module.embed.table, y.float())
    return _affine(module.label, e)


def _powi_f32(a, b):
    """compiler-rt's __powisf2 (Rust's f32::powi): square-and-multiply in f32 (`a` a 0-d f32)."""
    r = torch.ones((), dtype=torch.float32)
    while True:
        if b & 1:
            r = r * a
        b //= 2
        if b == 0:
            return r
        a = a * a


class _Block(nn.Module):
    def __init__(self, h, dilation):
        super().__init__()
        self.temb, self.conv, self.mix = nn.Linear(h, h), nn.Linear(3 * h, h), nn.Linear(h, h)
        self.dilation = dilation


class _Denoiser(nn.Module):
    def __init__(self, c, h, e, dilations):
        super().__init__()
        self.t_in, self.t_out = nn.Linear(e, 2 * h), nn.Linear(2 * h, h)
        self.input = nn.Linear(3 * c, h)
        self.blocks = nn.ModuleList(_Block(h, d) for d in dilations)
        self.output = nn.Linear(h, c)
        half = e // 2
        # f32 from f64, as neurogen builds the frequencies.
        self.register_buffer("freqs", torch.tensor(
            [math.exp(-math.log(10000.0) * k / half) for k in range(half)], dtype=torch.float32),
            persistent=False)

    @staticmethod
    def taps3(x, d):
        return torch.cat([_shift(x, d), x, _shift(x, -d)], 2)

    def forward(self, x, t, label):
        a = t.float().view(-1, 1) * self.freqs.view(1, -1)
        temb = _affine(self.t_out, F.silu(_affine(self.t_in, torch.cat([a.sin(), a.cos()], 1))))
        if label is not None:
            temb = temb + label
        h = _affine(self.input, self.taps3(x.transpose(1, 2), 1))  # time-major [b, t, hidden]
        for blk in self.blocks:
            u = F.silu(h + _affine(blk.temb, temb).unsqueeze(1))
            h = h + _affine(blk.mix, F.silu(_affine(blk.conv, self.taps3(u, blk.dilation))))
        return _affine(self.output, F.silu(h)).transpose(1, 2)


@register("diffusion")
class Diffusion(nn.Module):
    """Denoising diffusion (neurogen-models/src/diffusion.rs): DDPM or DDIM sampling from x_T,
    white or Ornstein–Uhlenbeck noise, ε- or v-prediction, classifier-free guidance."""

    def __init__(self, desc):
        super().__init__()
        m, w = desc["model"], desc["window"]
        self.channels, self.time = w["channels"], w["time"]
        self.counts = w["kind"] == "counts"
        for key, allowed in (("schedule", ("linear", "cosine")), ("prediction", ("eps", "v")),
                             ("noise", ("white", "ou")), ("sampler", ("ddpm", "ddim"))):
            if m[key] not in allowed:
                raise ValueError(f"diffusion: {key} = {m[key]!r} has no PyTorch port ({allowed})")
        self.net = _Denoiser(self.channels, m["hidden"], m["time_embed"], m["dilations"])
        _label_modules(self, desc, m["hidden"])
        self.v, self.ddpm, self.eta = m["prediction"] == "v", m["sampler"] == "ddpm", m["eta"]
        self.guidance = m["guidance"]
        # The schedule in f64, as neurogen keeps it (cast to f32 only where it is used).
        T = m["steps"]
        if m["schedule"] == "linear":
            b0, b1 = m["beta_start"], m["beta_end"]
            self.betas = [b0 + (b1 - b0) * i / (T - 1) for i in range(T)]
        else:
            f = lambda i: math.cos((i / T + 0.008) / 1.008 * (math.pi / 2)) ** 2  # noqa: E731
            self.betas = [min(max(1.0 - f(i + 1) / f(i), 0.0), 0.999) for i in range(T)]
        self.abar, acc = [], 1.0
        for b in self.betas:
            acc *= 1.0 - b
            self.abar.append(acc)
        if self.ddpm:
            self.steps = list(range(T - 1, -1, -1))
        else:
            s = max(m["sample_steps"], 1)
            v = [T - 1 if s == 1 else (T - 1) * (s - 1 - i) // (s - 1) for i in range(s)]
            self.steps = [x for i, x in enumerate(v) if i == 0 or x != v[i - 1]]
        self.stochastic = self.ddpm or self.eta > 0.0
        d = self.channels * self.time
        self.noise_dim = d * (1 + (len(self.steps) if self.stochastic else 0))
        # The OU colouring matrix [time in, time out], built in f32 as neurogen builds it.
        self.colour_matrix = None
        if m["noise"] == "ou" and self.time >= 2:
            t = self.time
            rho = torch.tensor(math.exp(-1.0 / m["ou_length"]), dtype=torch.float32)
            s = (1.0 - rho * rho).sqrt()
            l = torch.zeros(t, t)
            for i in range(t):
                for j in range(i + 1):
                    l[j, i] = (1.0 if j == 0 else s) * _powi_f32(rho, i - j)
            self.colour_matrix = l

    def colour(self, eta):
        if self.colour_matrix is None:
            return eta
        n, c, t = eta.shape
        return (eta.reshape(n * c, t) @ self.colour_matrix).reshape(n, c, t)

    def eps_hat(self, x, s, label):
        out = self.net(x, torch.full((x.shape[0],), float(s)), label)
        if not self.v:
            return out
        a = torch.tensor(self.abar[s], dtype=torch.float32)  # ε = √ā v + √(1 − ā) x_t, in f32
        return a.sqrt() * out + (1.0 - a).sqrt() * x

    def guided(self, x, s, y):
        cond = _label_term(self, y, x.shape[0])
        g = torch.tensor(self.guidance, dtype=torch.float32)
        if cond is not None and y is not None and abs(g.item() - 1.0) > 1e-9:
            eu = self.eps_hat(x, s, _label_term(self, None, x.shape[0]))
            ec = self.eps_hat(x, s, cond)
            return eu + (ec - eu) * g
        return self.eps_hat(x, s, cond)

    def generate(self, z, y=None):
        z = z.float()
        n, (c, t) = z.shape[0], (self.channels, self.time)
        d = c * t
        draw = lambda k: self.colour(z[:, k * d:(k + 1) * d].reshape(n, c, t))  # noqa: E731
        x = draw(0)
        for i, s in enumerate(self.steps):
            a = self.abar[s]
            a_prev = self.abar[self.steps[i + 1]] if i + 1 < len(self.steps) else 1.0
            eps = self.guided(x, s, y)
            x0 = (x - eps * math.sqrt(1.0 - a)) / math.sqrt(a)
            if self.ddpm:  # the posterior q(x_{t−1} | x_t, x̂_0), variance β̃_t
                beta = self.betas[s]
                c0 = math.sqrt(a_prev) * beta / (1.0 - a)
                ct = math.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a)
                var = beta * (1.0 - a_prev) / (1.0 - a)
                x = x0 * c0 + x * ct
                if var > 0.0:
                    x = x + draw(1 + i) * math.sqrt(var)
            else:
                sigma = (self.eta * math.sqrt((1.0 - a_prev) / (1.0 - a))
                         * math.sqrt(max(1.0 - a / a_prev, 0.0)))
                x = x0 * math.sqrt(a_prev) + eps * math.sqrt(max(1.0 - a_prev - sigma * sigma, 0.0))
                if self.stochastic and sigma > 0.0:
                    x = x + draw(1 + i) * sigma
        return x.clamp_min(0.0).floor() if self.counts else x


class _Layer(nn.Module):
    def __init__(self, r, s, inputs, dilation):
        super().__init__()
        self.taps, self.residual, self.skip = nn.Linear(2 * r, 2 * r), nn.Linear(r, r), nn.Linear(r, s)
        self.drive = nn.Linear(inputs, 2 * r) if inputs else None
        self.dilation = dilation


@register("autoregressive")
class WaveNet(nn.Module):
    """Autoregressive WaveNet (neurogen-models/src/wavenet.rs): ancestral sampling with each
    layer's past kept, one step of `channels × noise_per_value` normals at a time."""

    def __init__(self, desc):
        super().__init__()
        m, w = desc["model"], desc["window"]
        c, r, s = w["channels"], m["residual"], m["skip"]
        self.channels, self.time = c, w["time"]
        self.counts = w["kind"] == "counts"
        self.inputs = len(w.get("input_names", []))
        lik = m.get("likelihood") or ("poisson" if self.counts else "gaussian")
        if lik not in ("gaussian", "poisson"):
            raise ValueError(f"autoregressive: likelihood = {lik!r} has no PyTorch port")
        self.components = 0 if lik == "poisson" else m["mixture"]
        # A log-rate; a mean and log σ; or K logits, K means, K log σ.
        self.per_channel = per_channel = {0: 1, 1: 2}.get(self.components, 3 * self.components)
        self.input = nn.Linear(c, r)
        self.input_drive = nn.Linear(self.inputs, r) if self.inputs else None
        self.layers = nn.ModuleList(_Layer(r, s, self.inputs, d) for d in m["dilations"])
        self.head1, self.head2 = nn.Linear(s, s), nn.Linear(s, c * per_channel)
        _label_modules(self, desc, r)
        self.k = 2 if self.components > 1 else 1
        # Steps drawn before each window and dropped.
        self.burn_in = m.get("burn_in", 0)
        self.noise_dim = c * (self.burn_in + self.time) * self.k

    def draw(self, p, z):
        """One step's values `[n, c]` from its parameters `[n, c·params]` and normals `[n, c, k]`."""
        n, c, _ = z.shape
        p = p.reshape(n, c, self.per_channel)
        if self.components == 0:
            return _poisson_quantile(p[..., 0].exp(), _normal_cdf(z[..., 0]))
        if self.components == 1:
            return p[..., 0] + p[..., 1].exp() * z[..., 0]
        k = self.components
        w = torch.softmax(p[..., :k], 2)
        # The component: the first whose cumulative weight exceeds Φ(z₁).
        below = (w.cumsum(2) <= _normal_cdf(z[..., :1])).float()
        chosen = below.sum(2, keepdim=True).clamp(0, k - 1).long()
        mean = p[..., k:2 * k].gather(2, chosen)
        sigma = p[..., 2 * k:].gather(2, chosen).exp()
        return (mean + sigma * z[..., 1:2]).reshape(n, c)

    def generate(self, z, y=None):
        z = z.float()
        n, c, length = z.shape[0], self.channels, self.burn_in + self.time
        z = z.reshape(n, length, c, self.k)
        label = _label_term(self, y, n)
        r = self.input.weight.shape[0]
        # A driven model generates with its inputs held at 0 (their training mean).
        ut = torch.zeros(n, self.inputs) if self.inputs else None
        history = [[] for _ in self.layers]  # each layer's inputs, oldest first
        prev, out, zeros = torch.zeros(n, c), [], torch.zeros(n, r)
        for t in range(length):
            h = _affine(self.input, (prev + 1.0).log() if self.components == 0 else prev)
            if label is not None:
                h = h + label
            if self.input_drive is not None:
                h = h + _affine(self.input_drive, ut)
            skip = None
            for layer, past in zip(self.layers, history):
                past.append(h)
                then = past.pop(0) if len(past) > layer.dilation else zeros
                pre = _affine(layer.taps, torch.cat([then, h], 1))
                if layer.drive is not None:
                    pre = pre + _affine(layer.drive, ut)
                g = pre[:, :r].tanh() * torch.sigmoid(pre[:, r:])
                sk = _affine(layer.skip, g)
                skip = sk if skip is None else skip + sk
                h = h + _affine(layer.residual, g)
            params = _affine(self.head2, F.relu(_affine(self.head1, F.relu(skip))))
            prev = self.draw(params, z[:, t])
            if self.counts and self.components > 0:  # Gaussian counts fed back as counts
                prev = prev.clamp_min(0.0).round()
            out.append(prev)
        return torch.stack(out[self.burn_in:], 2)


def _poisson_quantile(rate, u, max_count=64):
    """The number of k < max_count with F(k) < u, the CDF summed in f32 as neurogen does."""
    u = u.clamp_max(0.99999)
    p = (-rate).exp()
    cdf = p
    count = (cdf < u).float()
    for k in range(1, max_count):
        p = p * (rate / k)
        cdf = cdf + p
        count = count + (cdf < u).float()
    return count


if __name__ == "__main__":
    sys.exit(main(sys.argv))
