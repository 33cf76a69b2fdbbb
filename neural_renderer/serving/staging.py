"""A generator session's per-frame host <-> device traffic: one copy up, one copy down.

Up: the frame's channels (read-only views of the session's shared memory, or arrays from the message
transports) are packed into one pinned host buffer with the action vector behind them, and go to the
device as ONE copy. On the device each channel is a view of the copied bytes in its wire dtype; every
conversion happens there. On CPU the "device" bytes are the host buffer itself.

Down: the output is converted and packed (RGB or RGBA, uint8 or float16) on the device, then copied once
into the daemon's output array; that copy is the frame's only synchronisation.

A buffer is reused by the next frame only after this frame's download, which waits for the stream, so an
upload still in flight is never overwritten.
"""
from __future__ import annotations

import numpy as np
import torch

ALIGN = 64  # the daemon's channel alignment (bridge.layout.CHANNEL_ALIGN): views stay dtype-aligned
_WIRE = {"float16": torch.float16, "float32": torch.float32, "uint8": torch.uint8,
         "uint16": torch.int16}  # no uint16 arithmetic in torch: read as int16, widened on the device


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class FrameIO:
    def __init__(self, device, extra_bytes: int):
        self.device = torch.device(device)
        self.reserve = _align(extra_bytes)  # room for the vector behind the channels
        self.pin = self.device.type == "cuda"
        self._host: dict[str, torch.Tensor] = {}  # "pack" -> uint8 host buffer
        self._dev: torch.Tensor | None = None

    def _buffer(self, which: str, nbytes: int) -> torch.Tensor:
        buf = self._host.get(which)
        if buf is None or buf.numel() < nbytes:
            buf = torch.empty(_align(max(nbytes, 1)), dtype=torch.uint8, pin_memory=self.pin)
            self._host[which] = buf
        return buf

    def _placement(self, arrays: dict[str, np.ndarray]) -> tuple[torch.Tensor, dict[str, int], int]:
        """(host buffer holding the arrays, byte offset of each in it, first free aligned offset)."""
        offs, pos = {}, 0
        for k, a in arrays.items():
            offs[k], pos = pos, _align(pos + a.nbytes)
        host = self._buffer("pack", pos + self.reserve)
        view = host.numpy()
        for k, a in arrays.items():
            np.copyto(view[offs[k]:offs[k] + a.nbytes].view(a.dtype).reshape(a.shape), a)
        return host, offs, pos

    def stage(self, arrays: dict[str, np.ndarray], extra: np.ndarray) -> tuple[torch.Tensor, dict[str, int], int]:
        """Channels and a small float32 vector -> (the device byte buffer holding them, byte offset of each channel
        in it, byte offset of the vector); one host-to-device copy. The buffer is the same tensor from frame to
        frame while the layout fits it, so a captured graph may read it in place."""
        host, offs, pos = self._placement(arrays)
        end = pos + extra.nbytes
        host.numpy()[pos:end].view(np.float32)[:] = extra.reshape(-1)
        if self.pin:
            if self._dev is None or self._dev.numel() < host.numel():
                self._dev = torch.empty(host.numel(), dtype=torch.uint8, device=self.device)
            dev = self._dev
            dev[:end].copy_(host[:end], non_blocking=True)  # the arrays are packed from byte 0
        else:
            dev = host
        return dev, offs, pos

    def upload(self, arrays: dict[str, np.ndarray], extra: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Channels (H, W, C) and a small float32 vector (the action) -> device views in wire dtype (uint16 widened
        to int32), and the vector on the device; one host-to-device copy."""
        dev, offs, pos = self.stage(arrays, extra)
        out = {k: channel_view(dev, offs[k], a.dtype.name, a.shape) for k, a in arrays.items()}
        return out, dev[pos:pos + extra.nbytes].view(torch.float32).view(extra.shape)

    @staticmethod
    def download(y: torch.Tensor, out: np.ndarray) -> None:
        """y (1, 3, H, W) in [-1, 1] on the device -> `out` (H, W, 3 | 4) uint8 or float16, in one copy."""
        FrameIO.fetch(pack(y, out.dtype, out.shape[-1]), out)

    @staticmethod
    def fetch(packed: torch.Tensor, out: np.ndarray) -> None:
        """A packed (H, W, C) device image -> `out`, in one copy (the frame's only synchronisation)."""
        if out.flags.c_contiguous and out.flags.writeable and out.dtype.isnative and tuple(out.shape) == tuple(packed.shape):
            torch.from_numpy(out).copy_(packed)
        else:
            out[...] = packed.cpu().numpy()


def channel_view(dev: torch.Tensor, offset: int, wire: str, shape: tuple) -> torch.Tensor:
    """A channel of the staged bytes as a tensor in its wire dtype (uint16 widened to int32)."""
    n = int(np.prod(shape)) * np.dtype(wire).itemsize
    t = dev[offset:offset + n].view(_WIRE[wire]).view(shape)
    return (t.to(torch.int32) & 0xFFFF) if wire == "uint16" else t


def pack(y: torch.Tensor, dtype, channels: int) -> torch.Tensor:
    """y (1, 3, H, W) in [-1, 1] -> the output image (H, W, channels) in `dtype` (uint8 or float16), on y's device."""
    img = ((y[0].float() + 1.0) * 0.5).clamp_(0.0, 1.0)  # (3, H, W)
    if np.dtype(dtype) == np.uint8:
        img = (img * 255.0 + 0.5).to(torch.uint8)
    else:
        img = img.to(torch.float16)
    if channels == 4:
        alpha = torch.full_like(img[:1], 255 if np.dtype(dtype) == np.uint8 else 1.0)
        img = torch.cat([img, alpha])
    return img.permute(1, 2, 0).contiguous()  # (H, W, C)
