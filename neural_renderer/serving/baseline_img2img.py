"""The baseline a user would reach for instead of the generator: a StreamDiffusion-style img2img step, written
here from the published shapes (random weights; nothing is downloaded; timing does not depend on weight values).

    image -> tiny VAE encoder -> latent at 1/8 -> noised to one timestep -> ONE UNet call with the 77-token
    text context -> the predicted clean latent -> tiny VAE decoder -> image

`UNetConfig.sd_turbo()` is the SD 2.1 UNet that SD-turbo uses (about 866M parameters): widths 320/640/1280/1280,
2 residual blocks per level, transformer blocks (self-attention, cross-attention to 77x1024 text, GEGLU
feed-forward, linear in/out projections, 64-wide heads) at the first three levels and in the middle, 3 residual
blocks per decoder level. The VAE is TAESD's shape (64-channel conv encoder/decoder, 3 ReLU conv blocks per
level, /8). On a GPU the whole step runs as one CUDA graph in fp16 (`Img2ImgStep`), which is what
StreamDiffusion's TensorRT path amounts to; on a CPU it runs eager at a scaled-down config (tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class UNetConfig:
    channels: tuple = (320, 640, 1280, 1280)
    attention: tuple = (True, True, True, False)  # transformer blocks at this level
    layers: int = 2  # residual blocks per encoder level (the decoder has one more)
    head_dim: int = 64
    context_dim: int = 1024
    context_tokens: int = 77
    groups: int = 32
    latent: int = 4
    vae_width: int = 64

    @classmethod
    def sd_turbo(cls) -> "UNetConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "UNetConfig":  # CPU tests: the same structure, narrow
        return cls(channels=(32, 64, 64, 64), head_dim=16, context_dim=32, groups=8, vae_width=16)


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # flip_sin_to_cos, as SD


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.temb(F.silu(emb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class Attention(nn.Module):
    def __init__(self, dim: int, context: int, head_dim: int):
        super().__init__()
        self.heads = dim // head_dim
        self.q = nn.Linear(dim, dim, bias=False)
        self.k, self.v = nn.Linear(context, dim, bias=False), nn.Linear(context, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, ctx):
        B, N, D = x.shape
        split = lambda t: t.view(B, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(ctx)), split(self.v(ctx)))
        return self.out(a.transpose(1, 2).reshape(B, N, D))


class Transformer(nn.Module):
    """GroupNorm, linear in, [LN self-attn, LN cross-attn, LN GEGLU], linear out, residual (SD 2.x)."""

    def __init__(self, dim: int, cfg: UNetConfig):
        super().__init__()
        self.norm = nn.GroupNorm(cfg.groups, dim, eps=1e-6)
        self.proj_in, self.proj_out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, cfg.head_dim)
        self.attn2 = Attention(dim, cfg.context_dim, cfg.head_dim)
        self.geglu, self.ff_out = nn.Linear(dim, 8 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x, ctx):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(B, H * W, C))
        n = self.ln1(h)
        h = h + self.attn1(n, n)
        h = h + self.attn2(self.ln2(h), ctx)
        a, gate = self.geglu(self.ln3(h)).chunk(2, dim=-1)
        h = h + self.ff_out(a * F.gelu(gate))
        return x + self.proj_out(h).reshape(B, H, W, C).permute(0, 3, 1, 2)


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        ch, temb = cfg.channels, 4 * cfg.channels[0]
        self.cfg = cfg
        self.time = nn.Sequential(nn.Linear(ch[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(cfg.latent, ch[0], 3, padding=1)
        skips, cur = [ch[0]], ch[0]
        self.down = nn.ModuleList()
        for lvl, c in enumerate(ch):
            for _ in range(cfg.layers):
                self.down.append(nn.ModuleList([ResBlock(cur, c, temb, cfg.groups),
                                                Transformer(c, cfg) if cfg.attention[lvl] else nn.Identity()]))
                cur = c
                skips.append(c)
            if lvl < len(ch) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(cur, cur, temb, cfg.groups), Transformer(cur, cfg),
                                  ResBlock(cur, cur, temb, cfg.groups)])
        self.up = nn.ModuleList()
        for lvl in range(len(ch) - 1, -1, -1):
            c = ch[lvl]
            for _ in range(cfg.layers + 1):
                self.up.append(nn.ModuleList([ResBlock(cur + skips.pop(), c, temb, cfg.groups),
                                              Transformer(c, cfg) if cfg.attention[lvl] else nn.Identity()]))
                cur = c
            if lvl > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2.0, mode="nearest"),
                                              nn.Conv2d(c, c, 3, padding=1)]))
        self.norm_out, self.conv_out = nn.GroupNorm(cfg.groups, cur), nn.Conv2d(cur, cfg.latent, 3, padding=1)

    @staticmethod
    def _run_block(block, h, emb, ctx):
        if isinstance(block[0], ResBlock):
            h = block[0](h, emb)
            return block[1](h, ctx) if isinstance(block[1], Transformer) else h
        for m in block:  # a down- or upsampler
            h = m(h)
        return h

    def forward(self, x, t, ctx):
        emb = self.time(_timestep_embedding(t, self.cfg.channels[0]).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = self._run_block(block, h, emb, ctx)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb), ctx), emb)
        for block in self.up:
            if isinstance(block[0], ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run_block(block, h, emb, ctx)
        return self.conv_out(F.silu(self.norm_out(h)))


class _TinyBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return F.relu(self.conv(x) + x)


def tiny_encoder(c: int, latent: int) -> nn.Sequential:
    """TAESD's encoder: image (3) -> latent at 1/8."""
    layers = [nn.Conv2d(3, c, 3, padding=1), _TinyBlock(c)]
    for _ in range(3):
        layers += [nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), _TinyBlock(c), _TinyBlock(c), _TinyBlock(c)]
    return nn.Sequential(*layers, nn.Conv2d(c, latent, 3, padding=1))


def tiny_decoder(c: int, latent: int) -> nn.Sequential:
    """TAESD's decoder: latent -> image (3) at 8x."""
    layers = [nn.Conv2d(latent, c, 3, padding=1), nn.ReLU()]
    for _ in range(3):
        layers += [_TinyBlock(c), _TinyBlock(c), _TinyBlock(c), nn.Upsample(scale_factor=2.0),
                   nn.Conv2d(c, c, 3, padding=1, bias=False)]
    return nn.Sequential(*layers, _TinyBlock(c), nn.Conv2d(c, 3, 3, padding=1))


class Img2ImgStep(nn.Module):
    """One StreamDiffusion img2img frame: encode, noise to `timestep` (SD's scaled-linear schedule),
    one epsilon prediction, the clean latent in closed form, decode."""

    def __init__(self, cfg: UNetConfig, timestep: int = 499):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = tiny_encoder(cfg.vae_width, cfg.latent), tiny_decoder(cfg.vae_width, cfg.latent)
        self.unet = UNet(cfg)
        lo, hi = 0.00085 ** 0.5, 0.012 ** 0.5  # host floats: the schedule is a constant of the step
        alpha_bar = math.prod(1.0 - (lo + (hi - lo) * i / 999) ** 2 for i in range(timestep + 1))
        self.a, self.s = alpha_bar ** 0.5, (1.0 - alpha_bar) ** 0.5
        self.register_buffer("t", torch.tensor([timestep]), persistent=False)

    def forward(self, image, noise, ctx):
        """image (B, 3, H, W) in [-1, 1], noise (B, latent, H/8, W/8), ctx (B, 77, context_dim) -> image."""
        latent = self.encoder(image)
        x_t = self.a * latent + self.s * noise
        eps = self.unet(x_t, self.t.expand(image.shape[0]), ctx)
        return self.decoder((x_t - self.s * eps) / self.a).clamp(-1.0, 1.0)


class GraphedImg2Img:
    """The step as ONE CUDA graph over static inputs (CUDA), or eager (elsewhere). Call with new inputs."""

    def __init__(self, step: Img2ImgStep, height: int, width: int, batch: int = 1):
        p = next(step.parameters())
        cfg = step.cfg
        g = torch.Generator(device=p.device).manual_seed(0)
        self.step = step.eval()
        self.inputs = (torch.rand(batch, 3, height, width, device=p.device, generator=g, dtype=p.dtype) * 2 - 1,
                       torch.randn(batch, cfg.latent, height // 8, width // 8, device=p.device, generator=g, dtype=p.dtype),
                       torch.randn(batch, cfg.context_tokens, cfg.context_dim, device=p.device, generator=g, dtype=p.dtype))
        self.graph = None
        if p.device.type == "cuda":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(2):  # warm-up: cuDNN picks its kernels outside the capture
                    self.step(*self.inputs)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.no_grad():
                self.out = self.step(*self.inputs)

    @torch.no_grad()
    def __call__(self) -> torch.Tensor:
        if self.graph is not None:
            self.graph.replay()
            return self.out
        return self.step(*self.inputs)


def params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
