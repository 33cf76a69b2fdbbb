"""A dataset's report for people: a contact sheet PNG and stats.json, read back from the files on disk."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .reader import SequenceDataset


def _stats(ds: SequenceDataset) -> dict:
    shard_bytes = sum(f.stat().st_size for f in ds.root.glob("shard_*/*.npy"))
    per_channel = {}
    sample = [ds.clip(i, 0, min(s.frames, 16)) for i, s in enumerate(ds.sequences[:8])]
    for c in ds.channels:
        v = np.concatenate([np.asarray(cl.engine[c], np.float64).reshape(-1) for cl in sample])
        per_channel[c] = {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}
    per_style = {}
    for s in ds.styles:
        v = np.concatenate([np.asarray(cl.reference[s], np.float64).reshape(-1) for cl in sample])
        per_style[s] = {"mean": float(v.mean()), "std": float(v.std())}
    meta = ds.index.get("meta", {})
    return {
        "root": str(ds.root),
        "split": ds.split,
        "resolution": [ds.width, ds.height],
        "sequences": len(ds),
        "frames": ds.total_frames,
        "seeds": [s.seed for s in ds.sequences],
        "styles": list(ds.styles),
        "shards": len(ds.index["shards"]),
        "bytes_on_disk": shard_bytes,
        "bytes_per_frame": shard_bytes / max(ds.total_frames, 1),
        "resets": int(sum(int(np.sum(ds.clip(i).reset)) for i in range(len(ds)))),
        "frames_per_second": meta.get("frames_per_second"),
        "render_seconds": meta.get("render_seconds"),
        "workers": meta.get("workers"),
        "engine_channels_first_16_frames": per_channel,
        "reference_first_16_frames": per_style,
    }


def contact_sheet(ds: SequenceDataset, path: Path, max_sequences: int = 4, frames_per_sequence: int = 4) -> Path:
    """Rows: (sequence, engine colour | each style's reference); columns: frames spread over the sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seqs = list(range(min(len(ds), max_sequences)))
    kinds = ["engine"] + list(ds.styles)
    rows = [(i, k) for i in seqs for k in kinds]
    fig, axes = plt.subplots(len(rows), frames_per_sequence, squeeze=False,
                             figsize=(1.6 * frames_per_sequence, 1.6 * len(rows) * ds.height / ds.width))
    for r, (i, kind) in enumerate(rows):
        n = ds.sequences[i].frames
        ts = np.linspace(0, n - 1, frames_per_sequence).round().astype(int)
        clip = ds.clip(i)
        for c, t in enumerate(ts):
            img = clip.engine["color"][t] if kind == "engine" else clip.reference[kind][t]
            ax = axes[r][c]
            ax.imshow(np.clip(np.asarray(img, np.float32), 0, 1))
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"seed {ds.sequences[i].seed}\n{kind}", fontsize=6)
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(root: str | Path) -> dict:
    ds = SequenceDataset(root, split=None)
    out = ds.root / "report"
    out.mkdir(exist_ok=True)
    stats = _stats(ds)
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    contact_sheet(ds, out / "contact_sheet.png")
    return stats
