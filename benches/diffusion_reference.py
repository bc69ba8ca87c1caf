"""The attention UNet of medsynth (src/models/unet.rs) written in PyTorch, timed the same way
as benches/diffusion.rs: training steps per second (Adam, MSE on epsilon, batch 8) and DDIM
sampling time per slice, on the CPU.

Usage: diffusion_reference.py SIZE BASE MULT ATTN HEADS BATCH TRAIN_STEPS SAMPLE_STEPS [DEVICE [VOLUME]]
  MULT: comma-separated channel multipliers; ATTN: comma-separated attention resolutions.
  VOLUME: when given, only a volume of that many slices is sampled (SAMPLE_STEPS steps, in
  batches of BATCH) and timed, with no training.
Prints JSON: parameter count, train steps/s, seconds per sampled slice (or per volume).
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = t.double()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1).float()


class TimeEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.first = nn.Linear(dim, 4 * dim)
        self.second = nn.Linear(4 * dim, 4 * dim)

    def forward(self, t):
        return self.second(F.silu(self.first(timestep_embedding(t, self.dim))))


class ResBlock(nn.Module):
    def __init__(self, i, o, tdim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, i)
        self.conv1 = nn.Conv2d(i, o, 3, padding=1)
        self.time = nn.Linear(tdim, o)
        self.norm2 = nn.GroupNorm(groups, o)
        self.conv2 = nn.Conv2d(o, o, 3, padding=1)
        self.skip = nn.Conv2d(i, o, 1) if i != o else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    """DiffiT time-dependent self-attention: q = x Wqs + t Wqt, likewise k and v."""

    def __init__(self, c, heads, groups, tdim):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.q, self.k, self.v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.q_t, self.k_t, self.v_t = nn.Linear(tdim, c), nn.Linear(tdim, c), nn.Linear(tdim, c)
        self.out = nn.Linear(c, c)
        self.heads = heads

    def forward(self, x, temb):
        b, c, h, w = x.shape
        n, d = h * w, c // self.heads
        tok = self.norm(x).reshape(b, c, n).transpose(1, 2)

        def proj(s, t):
            y = s(tok) + t(temb)[:, None, :]
            return y.reshape(b, n, self.heads, d).transpose(1, 2)

        q, k, v = proj(self.q, self.q_t), proj(self.k, self.k_t), proj(self.v, self.v_t)
        att = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(d), dim=3)
        y = (att @ v).transpose(1, 2).reshape(b, n, c)
        return x + self.out(y).transpose(1, 2).reshape(b, c, h, w)


class Unet(nn.Module):
    def __init__(self, cin, cout, base, mult, res_blocks, groups, heads, attn, size):
        super().__init__()
        self.time = TimeEmbedding(base)
        tdim = 4 * base
        self.input = nn.Conv2d(cin, base, 3, padding=1)
        self.down, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        skips, ch, s = [base], base, size
        self.res_blocks, self.levels = res_blocks, len(mult)
        for l, m in enumerate(mult):
            out = base * m
            for _ in range(res_blocks):
                self.down.append(ResBlock(ch, out, tdim, groups))
                self.down_attn.append(Attention(out, heads, groups, tdim) if s in attn else nn.Identity())
                ch = out
                skips.append(ch)
            if l + 1 < len(mult):
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                s //= 2
        self.mid1 = ResBlock(ch, ch, tdim, groups)
        self.mid_attn = Attention(ch, heads, groups, tdim)
        self.mid2 = ResBlock(ch, ch, tdim, groups)
        self.up, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for l in reversed(range(len(mult))):
            out = base * mult[l]
            for _ in range(res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), out, tdim, groups))
                self.up_attn.append(Attention(out, heads, groups, tdim) if s in attn else nn.Identity())
                ch = out
            if l > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
                s *= 2
        self.out_norm = nn.GroupNorm(groups, ch)
        self.output = nn.Conv2d(ch, cout, 3, padding=1)

    def forward(self, x, t):
        temb = self.time(t)

        def run(block, attn, h):
            h = block(h, temb)
            return attn(h, temb) if isinstance(attn, Attention) else h

        h = self.input(x)
        skips = [h]
        i = 0
        for l in range(self.levels):
            for _ in range(self.res_blocks):
                h = run(self.down[i], self.down_attn[i], h)
                skips.append(h)
                i += 1
            if l < len(self.downsample):
                h = self.downsample[l](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb), temb), temb)
        i = 0
        for l in range(self.levels):
            for _ in range(self.res_blocks + 1):
                h = run(self.up[i], self.up_attn[i], torch.cat([h, skips.pop()], 1))
                i += 1
            if l < len(self.upsample):
                h = self.upsample[l](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.output(F.silu(self.out_norm(h)))


def sample_volume(net, size, batch, steps, slices, device, sync):
    """Seconds to sample a volume of `slices` slices, `batch` at a time, `steps` network passes each."""
    net.eval()
    cond = torch.randn(batch, 2, size, size, device=device)
    with torch.no_grad():
        net(torch.cat([cond[:, :1], cond], 1), torch.zeros(batch, device=device))
        sync()
        start = time.perf_counter()
        for first in range(0, slices, batch):
            n = min(batch, slices - first)
            xt = torch.randn(n, 1, size, size, device=device)
            for i in range(steps):
                t = torch.full((n,), 999 - i * (1000 // steps), device=device)
                eps = net(torch.cat([xt, cond[:n]], 1), t)
                xt = xt - 0.01 * eps
        sync()
        return time.perf_counter() - start


def main():
    size, base = int(sys.argv[1]), int(sys.argv[2])
    mult = [int(x) for x in sys.argv[3].split(",")]
    attn = [int(x) for x in sys.argv[4].split(",")]
    heads, batch, train_steps, sample_steps = (int(x) for x in sys.argv[5:9])
    device = torch.device(sys.argv[9] if len(sys.argv) > 9 else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    volume = int(sys.argv[10]) if len(sys.argv) > 10 else 0
    torch.manual_seed(0)
    net = Unet(3, 1, base, mult, 1, 8, heads, attn, size).to(device)
    params = sum(p.numel() for p in net.parameters())
    if volume:
        json.dump({"params": params, "volume_s": sample_volume(net, size, batch, sample_steps, volume, device, sync),
                   "threads": torch.get_num_threads(), "device": str(device)}, sys.stdout)
        return
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    target = torch.randn(batch, 1, size, size, device=device)

    def step():
        t = torch.randint(0, 1000, (batch,), device=device)
        loss = F.mse_loss(net(x, t), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    sync()
    start = time.perf_counter()
    for _ in range(train_steps):
        step()
    sync()
    train_rate = train_steps / (time.perf_counter() - start)

    net.eval()
    with torch.no_grad():
        net(x, torch.zeros(batch, device=device))
        sync()
        start = time.perf_counter()
        xt = torch.randn(batch, 1, size, size, device=device)
        for i in range(sample_steps):
            t = torch.full((batch,), 999 - i * (1000 // sample_steps), device=device)
            eps = net(torch.cat([xt, x[:, 1:]], 1), t)
            xt = xt - 0.01 * eps  # the update's cost is negligible beside the network
        sync()
        per_slice = (time.perf_counter() - start) / batch
    json.dump({"params": params, "train_steps_per_s": train_rate, "sample_s_per_slice": per_slice,
               "threads": torch.get_num_threads(), "device": str(device)}, sys.stdout)


if __name__ == "__main__":
    main()
