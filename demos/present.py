"""Turning linear frames into things a person looks at: sRGB uint8, labelled panels, side-by-side views,
the HUD text block, and the contact sheet."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_srgb8(img: np.ndarray) -> np.ndarray:
    """Linear RGB (float in [0, 1], or uint8 holding linear values) -> sRGB-encoded uint8 (H, W, 3)."""
    x = img[..., :3]
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else np.nan_to_num(x.astype(np.float32))
    x = np.clip(x, 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.rint(s * 255.0).astype(np.uint8)


def draw_text(img: np.ndarray, lines: Sequence[str], xy: tuple[int, int] = (4, 4), scale: int = 1,
              box: bool = True) -> np.ndarray:
    """Draws white text (Pillow's built-in bitmap font, no files needed) on an sRGB uint8 image, in place."""
    from PIL import Image, ImageDraw, ImageFont

    if not lines:
        return img
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    widths = [probe.textbbox((0, 0), line, font=font)[2] for line in lines]
    lh = 12
    w, h = max(widths) + 6, lh * len(lines) + 4
    layer = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(layer)
    for i, line in enumerate(lines):
        d.text((3, 2 + i * lh), line, fill=255, font=font)
    mask = np.asarray(layer, np.float32) / 255.0
    if scale > 1:
        mask = np.kron(mask, np.ones((scale, scale), np.float32))
    x0, y0 = xy
    H, W = img.shape[:2]
    mh, mw = min(mask.shape[0], H - y0), min(mask.shape[1], W - x0)
    if mh <= 0 or mw <= 0:
        return img
    region = img[y0:y0 + mh, x0:x0 + mw].astype(np.float32)
    if box:
        region *= 0.45
    m = mask[:mh, :mw, None]
    img[y0:y0 + mh, x0:x0 + mw] = np.rint(region * (1 - m) + 255.0 * m).astype(np.uint8)
    return img


def text_overlay(lines: Sequence[str], scale: int = 1) -> np.ndarray:
    """White text on a translucent black box as an RGBA uint8 image (the window's HUD, drawn at screen size)."""
    probe = draw_text(np.zeros((1024, 2048, 3), np.uint8), lines, (0, 0), scale=scale, box=False)
    ys, xs = np.nonzero(probe.max(-1))
    h, w = (ys.max() + 4, xs.max() + 4) if len(ys) else (1, 1)
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = probe[:h, :w]
    rgba[..., 3] = np.maximum(140, probe[:h, :w].max(-1))
    return rgba


def side_by_side(panels: Sequence[np.ndarray], labels: Sequence[str] | None = None, gap: int = 2) -> np.ndarray:
    """sRGB uint8 panels of one height -> one image, each panel labelled in its corner."""
    h = panels[0].shape[0]
    parts = []
    for k, p in enumerate(panels):
        p = p.copy()
        if labels:
            draw_text(p, [labels[k]])
        parts.append(p)
        if k < len(panels) - 1:
            parts.append(np.zeros((h, gap, 3), np.uint8))
    return np.concatenate(parts, 1)


def contact_sheet(rows: dict[str, list[np.ndarray]], frame_ids: Sequence[int], gap: int = 2) -> np.ndarray:
    """A grid: one row per named view, one column per sampled frame (all sRGB uint8 of one size)."""
    out_rows = []
    for name, imgs in rows.items():
        cells = []
        for k, im in enumerate(imgs):
            im = im.copy()
            draw_text(im, [f"{name} #{frame_ids[k]}"])
            cells.append(im)
            cells.append(np.zeros((im.shape[0], gap, 3), np.uint8))
        out_rows.append(np.concatenate(cells[:-1], 1))
        out_rows.append(np.zeros((gap, out_rows[-1].shape[1], 3), np.uint8))
    return np.concatenate(out_rows[:-1], 0)


def resize_nearest(img: np.ndarray, width: int, height: int) -> np.ndarray:
    ys = (np.arange(height) * img.shape[0] // height).clip(0, img.shape[0] - 1)
    xs = (np.arange(width) * img.shape[1] // width).clip(0, img.shape[1] - 1)
    return img[ys][:, xs]
