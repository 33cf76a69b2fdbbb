"""Where each slot and channel lives inside a session's shared-memory file (docs/protocol.md)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.channels import DECLARABLE_CHANNELS, OUTPUT_FORMATS

SLOT_ALIGN = 4096  # page: each slot starts on its own page
CHANNEL_ALIGN = 64  # cache line: each channel inside a slot


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass(frozen=True)
class ChannelLayout:
    name: str
    dtype: str
    components: int
    nbytes: int

    def as_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "components": self.components, "nbytes": self.nbytes}


@dataclass(frozen=True)
class SlotLayout:
    """Byte layout of one session: `slots` input slots then `slots` output slots."""
    width: int
    height: int
    channels: tuple[ChannelLayout, ...]
    output: ChannelLayout  # name = output format
    slots: int
    input_offsets: tuple[tuple[int, ...], ...]  # [slot][channel]
    output_offsets: tuple[int, ...]  # [slot]
    size: int

    @staticmethod
    def build(width: int, height: int, channels: dict[str, str], output_format: str, slots: int) -> "SlotLayout":
        chans = tuple(ChannelLayout(n, d, DECLARABLE_CHANNELS[n].components,
                                    width * height * DECLARABLE_CHANNELS[n].components * np.dtype(d).itemsize)
                      for n, d in channels.items())
        odt, oc = OUTPUT_FORMATS[output_format]
        out = ChannelLayout(output_format, odt, oc, width * height * oc * np.dtype(odt).itemsize)
        pos, in_offs = 0, []
        for _ in range(slots):
            offs = []
            for c in chans:
                offs.append(pos)
                pos = _align(pos + c.nbytes, CHANNEL_ALIGN)
            in_offs.append(tuple(offs))
            pos = _align(pos, SLOT_ALIGN)
        out_offs = []
        for _ in range(slots):
            out_offs.append(pos)
            pos = _align(pos + out.nbytes, SLOT_ALIGN)
        return SlotLayout(width, height, chans, out, slots, tuple(in_offs), tuple(out_offs), max(pos, SLOT_ALIGN))

    def input_views(self, buf, slot: int) -> dict[str, np.ndarray]:
        """(H, W, C) arrays over `buf` (mmap or bytearray) for input slot `slot`."""
        return {c.name: np.ndarray((self.height, self.width, c.components), np.dtype(c.dtype).newbyteorder("<"),
                                   buffer=buf, offset=off)
                for c, off in zip(self.channels, self.input_offsets[slot])}

    def output_view(self, buf, slot: int) -> np.ndarray:
        o = self.output
        return np.ndarray((self.height, self.width, o.components), np.dtype(o.dtype).newbyteorder("<"),
                          buffer=buf, offset=self.output_offsets[slot])
