"""W6 wavenet_sample: ancestral generation of 16 windows of 16 channels x 256 samples by W6's
WaveNet, one step at a time with each layer's past inputs kept (Paine et al. 2016's fast
generation), under no_grad: neurogen's `bench --workload wavenet_sample`, in PyTorch.

The reference scripts live in ../shared/bench/pytorch (on PYTHONPATH: scripts/compare-pytorch.sh
sets it); this one reuses W6's model and the shared harness. Step t feeds the previous draw
(zeros at t = 0) through the input layer, each layer's dilated taps read its input from d steps
earlier (zeros before the start), and the head's mean and log sigma give the next draw."""
import torch

from common import emit, n_params, setup, time_steps
from wavenet import B, C, L, WaveNet, forward_flops


def generate(net, n, length):
    """[n, C, length] drawn from net, one step at a time."""
    w_in, b_in = net.inp.weight[:, :, 0], net.inp.bias  # [R, C]
    layers = []
    for layer in net.layers:
        # [x[t - d], x[t]] -> filter and gate pre-activations in one product: [2R, 2R].
        w = torch.cat([torch.cat([layer.filt.weight[:, :, 0], layer.filt.weight[:, :, 1]], 1),
                       torch.cat([layer.gate.weight[:, :, 0], layer.gate.weight[:, :, 1]], 1)], 0)
        b = torch.cat([layer.filt.bias, layer.gate.bias])
        layers.append((layer.d, w, b, layer.res.weight[:, :, 0], layer.res.bias,
                       layer.skip.weight[:, :, 0], layer.skip.bias))
    h1, h2 = net.head[1], net.head[3]
    r = w_in.shape[0]
    past = [[torch.zeros(n, r)] * d for d, *_ in layers]  # each layer's last d inputs
    prev, out = torch.zeros(n, C), []
    for t in range(length):
        h = torch.nn.functional.linear(prev, w_in, b_in)  # [n, R]
        skip = 0
        for i, (d, w, b, w_res, b_res, w_skip, b_skip) in enumerate(layers):
            then = past[i][t % d]
            past[i][t % d] = h
            fg = torch.nn.functional.linear(torch.cat([then, h], 1), w, b)  # [n, 2R]
            z = torch.tanh(fg[:, :r]) * torch.sigmoid(fg[:, r:])
            skip = skip + torch.nn.functional.linear(z, w_skip, b_skip)
            h = h + torch.nn.functional.linear(z, w_res, b_res)
        s = torch.relu(torch.nn.functional.linear(torch.relu(skip), h1.weight[:, :, 0], h1.bias))
        params = torch.nn.functional.linear(s, h2.weight[:, :, 0], h2.bias)  # [n, 2C]
        mean, log_sigma = params[:, :C], params[:, C:]
        prev = mean + torch.exp(log_sigma) * torch.randn(n, C)
        out.append(prev)
    return torch.stack(out, 2)


def main():
    args = setup()
    net = WaveNet()

    @torch.no_grad()
    def sample():
        generate(net, B, L)

    rate = time_steps(sample, args, warmup=1, steps=2)
    # W6's forward FLOPs cover its 255 predicted positions; generation makes 256.
    emit("wavenet_sample", args, B, rate, n_params(net), B * L * forward_flops() // (L - 1))


if __name__ == "__main__":
    main()
