"""The self-attention GANs of medsynth (src/models/gan, src/models/sagan.rs,
src/models/spectral.rs) rebuilt in PyTorch, for the speed comparison of benches/gan.rs.

    python gan_reference.py ARCH SIZE BASE MULT ATTENTION BATCH STEPS

ARCH is `unet` (UNet generator + PatchGAN, translation with one input and its mask) or
`noise` (residual generator from z with self-modulated conditional batch norm + residual
projection discriminator). Prints JSON: parameter counts (trainable, and the state medsynth also counts) and
discriminator / generator optimizer steps per second (hinge loss, + 100 L1 for unet; Adam
betas (0, 0.9)), as medsynth's trainer does them.
"""

import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SN = nn.utils.spectral_norm


def conv(i, o, k, s, p, bias=True):
    return SN(nn.Conv2d(i, o, k, s, p, bias=bias))


def groups_for(c, g):
    return next(d for d in range(min(g, c), 0, -1) if c % d == 0)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        c8 = max(c // 8, 1)
        self.f, self.g = conv(c, c8, 1, 1, 0, False), conv(c, c8, 1, 1, 0, False)
        self.h, self.v = conv(c, c, 1, 1, 0, False), conv(c, c, 1, 1, 0, False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, hh, ww = x.shape
        n = hh * ww
        f = self.f(x).view(b, -1, n)
        g = self.g(x).view(b, -1, n)
        h = self.h(x).view(b, c, n)
        beta = torch.softmax(g.transpose(1, 2) @ f, dim=2)
        o = (h @ beta.transpose(1, 2)).view(b, c, hh, ww)
        return x + self.gamma * self.v(o)


class Block(nn.Module):
    def __init__(self, i, o, k, s, groups):
        super().__init__()
        self.conv = conv(i, o, k, s, 1 if k == 4 else k // 2)
        self.norm = nn.GroupNorm(groups_for(o, groups), o)
        self.leaky = s > 1

    def forward(self, x):
        h = self.norm(self.conv(x))
        return F.leaky_relu(h, 0.2) if self.leaky else F.relu(h)


def up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


class UnetG(nn.Module):
    def __init__(self, cin, base, mult, groups=8):
        super().__init__()
        ch = [base * m for m in mult]
        self.stem = Block(cin, ch[0], 3, 1, groups)
        self.down = nn.ModuleList(Block(a, b, 4, 2, groups) for a, b in zip(ch, ch[1:]))
        self.mid1 = Block(ch[-1], ch[-1], 3, 1, groups)
        self.attention = Attention(ch[-1])
        self.mid2 = Block(ch[-1], ch[-1], 3, 1, groups)
        pairs = list(zip(ch, ch[1:]))[::-1]
        self.ups = nn.ModuleList(Block(b, a, 3, 1, groups) for a, b in pairs)
        self.fuse = nn.ModuleList(Block(2 * a, a, 3, 1, groups) for a, b in pairs)
        self.output = conv(ch[0], 1, 3, 1, 1)

    def forward(self, x):
        h = self.stem(x)
        skips = []
        for d in self.down:
            skips.append(h)
            h = d(h)
        h = self.mid2(self.attention(self.mid1(h)))
        for u, f in zip(self.ups, self.fuse):
            h = f(torch.cat([u(up(h)), skips.pop()], 1))
        return torch.tanh(self.output(h))


class PatchD(nn.Module):
    def __init__(self, cin, base, size, attention):
        super().__init__()
        w = [cin, base, 2 * base, 4 * base, 8 * base, 1]
        self.convs = nn.ModuleList(
            conv(a, b, 4, 2 if k < 3 else 1, 1) for k, (a, b) in enumerate(zip(w, w[1:]))
        )
        self.after = min(range(3), key=lambda k: abs((size >> (k + 1)) - attention))
        self.attention = Attention(w[self.after + 1])

    def forward(self, x):
        for k, c in enumerate(self.convs):
            x = c(x)
            if k < len(self.convs) - 1:
                x = F.leaky_relu(x, 0.2)
            if k == self.after:
                x = self.attention(x)
        return x


class CBN(nn.Module):
    def __init__(self, c, cond):
        super().__init__()
        self.gain = SN(nn.Linear(cond, c, bias=False))
        self.bias = SN(nn.Linear(cond, c, bias=False))
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("var", torch.ones(c))

    def forward(self, x, cond):
        x = F.batch_norm(x, self.mean, self.var, None, None, self.training, 0.1, 1e-5)
        return x * (1 + self.gain(cond))[:, :, None, None] + self.bias(cond)[:, :, None, None]


class UpBlock(nn.Module):
    def __init__(self, i, o, cond):
        super().__init__()
        self.norm1, self.conv1 = CBN(i, cond), conv(i, o, 3, 1, 1)
        self.norm2, self.conv2 = CBN(o, cond), conv(o, o, 3, 1, 1)
        self.skip = conv(i, o, 1, 1, 0)

    def forward(self, x, cond):
        h = self.conv1(up(F.relu(self.norm1(x, cond))))
        h = self.conv2(F.relu(self.norm2(h, cond)))
        return h + self.skip(up(x))


def nearest(sizes, target):
    return min(range(len(sizes)), key=lambda i: (abs(sizes[i] - target), i))


class NoiseG(nn.Module):
    def __init__(self, z, size, base, attention):
        super().__init__()
        n = 0
        while size >> (n + 1) >= 4 and size % (1 << (n + 1)) == 0:
            n += 1
        ch = [base << min(n - k, 3) for k in range(n + 1)]
        self.start = (ch[0], size >> n, size >> n)
        self.input = SN(nn.Linear(z, ch[0] * (size >> n) ** 2))
        self.blocks = nn.ModuleList(UpBlock(ch[k], ch[k + 1], z) for k in range(n))
        self.after = nearest([(size >> n) << (k + 1) for k in range(n)], attention)
        self.attention = Attention(ch[self.after + 1])
        self.out_norm = CBN(ch[n], z)
        self.output = conv(ch[n], 1, 3, 1, 1)

    def forward(self, z):
        x = self.input(z).view(z.shape[0], *self.start)
        for k, b in enumerate(self.blocks):
            x = b(x, z)
            if k == self.after:
                x = self.attention(x)
        return torch.tanh(self.output(F.relu(self.out_norm(x, z))))


class DownBlock(nn.Module):
    def __init__(self, i, o, first, down):
        super().__init__()
        self.conv1, self.conv2 = conv(i, o, 3, 1, 1), conv(o, o, 3, 1, 1)
        self.skip = conv(i, o, 1, 1, 0) if (i != o or down) else None
        self.first, self.down = first, down

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        pool = lambda t: F.avg_pool2d(t, 2)
        if self.down:
            h = pool(h)
        if self.skip is None:
            s = x
        elif self.first:
            s = self.skip(pool(x) if self.down else x)
        else:
            s = self.skip(x)
            s = pool(s) if self.down else s
        return h + s


class ProjectionD(nn.Module):
    def __init__(self, size, base, attention):
        super().__init__()
        n = 0
        while size >> (n + 1) >= 4 and size % (1 << (n + 1)) == 0:
            n += 1
        ch = [base << min(k, 3) for k in range(n + 1)]
        blocks, sizes, i = [], [], 1
        for k, o in enumerate(ch):
            blocks.append(DownBlock(i, o, k == 0, k < n))
            sizes.append(size >> (k + 1) if k < n else size >> n)
            i = o
        self.blocks = nn.ModuleList(blocks)
        self.after = nearest(sizes[: max(n, 1)], attention)
        self.attention = Attention(ch[self.after])
        self.linear = SN(nn.Linear(i, 1))

    def forward(self, x):
        for k, b in enumerate(self.blocks):
            x = b(x)
            if k == self.after:
                x = self.attention(x)
        return self.linear(F.relu(x).sum(dim=(2, 3)))


def main():
    arch, size, base, mult, attention, batch, steps = sys.argv[1:8]
    size, base, attention, batch, steps = map(int, (size, base, attention, batch, steps))
    mult = [int(m) for m in mult.split(",")]
    dev = torch.device(sys.argv[8] if len(sys.argv) > 8 else "cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    if arch == "unet":
        g, d = UnetG(2, base, mult).to(dev), PatchD(3, base, size, attention).to(dev)
        cond = torch.randn(batch, 2, size, size, device=dev)
        real = torch.randn(batch, 1, size, size, device=dev).clamp(-1, 1)
        gen = lambda: g(cond)
        score = lambda img: d(torch.cat([cond, img], 1))
    else:
        g, d = NoiseG(128, size, base, attention).to(dev), ProjectionD(size, base, attention).to(dev)
        real = torch.randn(batch, 1, size, size, device=dev).clamp(-1, 1)
        gen = lambda: g(torch.randn(batch, 128, device=dev))
        score = d
    opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), 4e-4, betas=(0.0, 0.9))

    def d_step():
        with torch.no_grad():
            fake = gen()
        loss = F.relu(1 - score(real)).mean() + F.relu(1 + score(fake)).mean()
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()

    def g_step():
        fake = gen()
        loss = -score(fake).mean()
        if arch == "unet":
            loss = loss + 100 * (fake - real).abs().mean()
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()

    rates = {}
    for name, step in (("d", d_step), ("g", g_step)):
        step()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        rates[name] = steps / (time.perf_counter() - start)
    count = lambda m: sum(p.numel() for p in m.parameters())
    # medsynth counts its non-trainable state too: the power-iteration u (torch also keeps
    # v, which medsynth recomputes) and the batch-norm statistics.
    buffers = lambda m: sum(
        b.numel() for n, b in m.named_buffers() if not n.endswith("weight_v")
    )
    print(
        json.dumps(
            {
                "params_g": count(g),
                "params_d": count(d),
                "buffers_g": buffers(g),
                "buffers_d": buffers(d),
                "d_steps_per_s": rates["d"],
                "g_steps_per_s": rates["g"],
                "threads": torch.get_num_threads(),
                "device": str(dev),
            }
        )
    )


if __name__ == "__main__":
    main()
