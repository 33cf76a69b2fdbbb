"""The evaluation report: README.md with a table of every figure, PNG plots, a sample-frame grid."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import metrics
from .scores import RECOVER_DB

COLUMNS = [
    ("PSNR dB", lambda s: s["psnr"], "{:.2f}"),
    ("SSIM", lambda s: s["ssim"], "{:.4f}"),
    ("warp err x1e3", lambda s: s["warp_error"] * 1e3, "{:.3f}"),
    ("drift dPSNR dB", lambda s: s["drift"]["psnr_last_minus_first"], "{:+.2f}"),
    ("drift warp x", lambda s: s["drift"]["warp_last_over_first"], "{:.2f}"),
    ("prompt switch frames", lambda s: s["prompt_switch"]["mean_frames"], "{:.1f}"),
    ("settled PSNR after switch", lambda s: s["prompt_switch"]["settled_psnr"], "{:.2f}"),
    ("reset frames", lambda s: s["reset"]["mean_frames"], "{:.1f}"),
    ("latency p50 ms", lambda s: s["latency"]["p50_ms"] if "latency" in s else None, "{:.2f}"),
    ("latency p99 ms", lambda s: s["latency"]["p99_ms"] if "latency" in s else None, "{:.2f}"),
    ("frames/s", lambda s: s["latency"]["fps"] if "latency" in s else None, "{:.1f}"),
    ("daemon render p50 ms", lambda s: s.get("latency", {}).get("daemon_render_p50_ms"), "{:.2f}"),
]


def _fmt(v, f) -> str:
    if v is None:
        return "-"
    v = float(v)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f.format(v)


def table(result: dict) -> str:
    lines = ["| system | " + " | ".join(c for c, _, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for name, sysres in result["systems"].items():
        s = sysres["summary"]
        lines.append(f"| {name} | " + " | ".join(_fmt(get(s), f) for _, get, f in COLUMNS) + " |")
    return "\n".join(lines)


def _colors(result: dict) -> dict[str, str]:
    """One colour per system in every plot: baselines grey and black, renderers from tab10."""
    fixed = {"engine": "tab:gray", "reference": "black"}
    others = [n for n in result["systems"] if n not in fixed]
    return {**fixed, **{n: f"C{i}" for i, n in enumerate(others)}}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_frame(result: dict, key: str, ylabel: str, path: Path) -> None:
    plt = _plt()
    seqs = result["sequences"]
    fig, axes = plt.subplots(len(seqs), 1, squeeze=False, figsize=(8, 2.4 * len(seqs)))
    colors = _colors(result)
    for i, seq in enumerate(seqs):
        ax = axes[i][0]
        for name, sysres in result["systems"].items():
            y = np.asarray(sysres["per_frame"][i][key], np.float64)
            if name == "reference" and key == "psnr":
                continue  # infinite by definition
            base = name in ("engine", "reference")  # drawn wide and pale so a renderer equal to one stays visible
            ax.plot(np.arange(len(y)), y, label=name, color=colors[name], lw=3 if base else 1,
                    alpha=0.45 if base else 1.0)
        for t, style in seq["schedule"][1:]:
            ax.axvline(t, color="k", ls="--", lw=0.7)
            ax.text(t, ax.get_ylim()[1], f" {style}", va="top", fontsize=7)
        for t in seq["resets"]:
            if t > 0:
                ax.axvline(t, color="r", ls=":", lw=0.7)
        ax.set_ylabel(ylabel)
        ax.set_title(f"seed {seq['seed']} (dashed: prompt switch, dotted red: reset)", fontsize=8)
        if key == "warp":
            ax.set_yscale("symlog", linthresh=1e-4)
    axes[-1][0].set_xlabel("frame")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_drift(result: dict, path: Path) -> None:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
    colors = _colors(result)
    for name, sysres in result["systems"].items():
        d = sysres["summary"]["drift"]
        x = np.arange(len(d["psnr_windows"])) * d["window"]
        if name != "reference":
            a.plot(x, d["psnr_windows"], marker="o", label=name, color=colors[name])
        b.plot(x, d["warp_windows"], marker="o", label=name, color=colors[name])
    last = result["systems"]["engine"]["summary"]["drift"].get("last_window")
    if last is not None:  # the two windows the headline compares
        w = result["systems"]["engine"]["summary"]["drift"]["window"]
        for ax in (a, b):
            ax.axvline(0, color="k", ls=":", lw=0.8)
            ax.axvline(last * w, color="k", ls=":", lw=0.8)
    a.set_title(f"PSNR per window ({result['systems']['engine']['summary']['drift']['window']} frames)", fontsize=9)
    b.set_title("warping error per window", fontsize=9)
    a.set_xlabel("window start frame"), b.set_xlabel("window start frame")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_samples(clip, seq, samples: dict[str, dict[int, np.ndarray]], path: Path) -> None:
    """Rows: sample frames; columns: engine pass, reference, then each renderer's output and error map."""
    plt = _plt()
    renderers = [n for n in samples if n not in ("engine", "reference")]
    ts = sorted(samples["engine"])
    cols = ["engine pass", "reference"] + [c for n in renderers for c in (n, f"|{n} - ref|")]
    fig, axes = plt.subplots(len(ts), len(cols), squeeze=False, figsize=(1.9 * len(cols), 1.9 * len(ts)))
    for r, t in enumerate(ts):
        ref = np.asarray(clip.reference[seq.style_at(t)][t], np.float32)
        imgs = [samples["engine"][t], ref]
        for n in renderers:
            imgs += [samples[n][t], metrics.error_map(samples[n][t], ref)]
        for c, img in enumerate(imgs):
            ax = axes[r][c]
            if img.ndim == 2:
                ax.imshow(img, cmap="magma", vmin=0, vmax=0.5)
            else:
                ax.imshow(np.clip(img, 0, 1))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(f"frame {t}\n{seq.style_at(t)}", fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report_dir, result: dict, clip, seq, samples) -> Path:
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_per_frame(result, "psnr", "PSNR dB", out / "psnr_vs_frame.png")
    plot_per_frame(result, "warp", "warping error", out / "warp_vs_frame.png")
    plot_drift(result, out / "drift.png")
    plot_samples(clip, seq, samples, out / "samples.png")
    hosts = "\n".join(f"- `{n}`: {d}" for n, d in result["hosts"].items())
    w, h = result["resolution"]
    md = f"""# neurender eval: `{result['renderer']}` on suite `{result['suite']}`

{len(result['sequences'])} held-out sequences (seeds {', '.join(str(s['seed']) for s in result['sequences'])}),
{w}x{h}, {sum(s['frames'] for s in result['sequences'])} frames per system, output format
`{result['output_format']}`, channels {', '.join(result['channels'])}{f", through the daemon at `{result['endpoint']}`" if result['endpoint'] else ' (in-process)'}; took {result['seconds']:.1f} s.

{table(result)}

- `engine`: the engine pass's colour as the output (the baseline); `reference`: the target look
  itself, so its warping error is the floor any output can reach.
- PSNR/SSIM: against the reference look of the style requested at that frame.
- Warping error: per pixel squared RGB distance between the output and the previous output warped
  along the engine's exact motion vectors, over pixels that are not disoccluded; not counted on
  the first frame of a run nor on resets.
- Drift: on the longest run, the last window showing the first window's look against the first
  window (all windows in `drift.png`).
- Prompt switch / reset frames: frames until PSNR reaches the segment's settled level minus
  {RECOVER_DB} dB; the settled PSNR is shown beside it.
- Latency: wall-clock per `render` call as the caller sees it, warm-up frames excluded; through a
  daemon, "daemon render" is the part of it the daemon spent in the renderer.

Hosts:
{hosts}

![PSNR per frame](psnr_vs_frame.png)
![warping error per frame](warp_vs_frame.png)
![drift](drift.png)
![samples](samples.png)
"""
    (out / "README.md").write_text(md)
    return out / "README.md"
