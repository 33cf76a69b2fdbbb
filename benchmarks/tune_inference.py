"""Sweep an inference-only knob of a shipped generator (`--option`: the history noise level by default, or the KV
cache's sink refresh period `sink_every`) on TRAINING seeds.

The knob is passed the way every arm is, as a renderer spec option (`generator:tiny?history_noise=0.1`,
`generator:tiny?sink_every=16`), and each
value is scored by the eval runner (`run_eval`) on a tuning suite (`Suite(split="train")`: training seeds 0..999
only, rendered into train-split datasets), so nothing chosen here has seen an evaluation seed. One long run per
look, one look each (no switches, no resets), long enough for the history feedback to build up.

Per value and look: PSNR and SSIM against the requested reference look, warping error with the engine's motion
vectors (always beside PSNR: a frozen output scores a perfect warp), and PSNR over the first and the second half of
each run (feedback build-up). Writes DIR/tune_<option>.json, DIR/tune_<option>.png (PSNR and warping error vs the
value, per look), DIR/tune_<option>.md and DIR/frames_<look>_seed<S>_t<T>.png (the output at frame T of each value
beside the reference and the engine pass).

    python benchmarks/tune_inference.py --values 0 0.05 0.1 0.2 0.3 --threads 1 --out /tmp/tune
    python benchmarks/tune_inference.py --option sink_every --values 0 16 32 64 --threads 1 --out /tmp/tune_sink
    python benchmarks/tune_inference.py --merge A/tune_history_noise.json B/tune_history_noise.json --out C

`--merge` pools the runs of sweeps made on other seeds (same values, frames, size) into one table and plot.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from neural_renderer.eval.runner import run_eval
from neural_renderer.eval.scores import finite_mean
from neural_renderer.eval.suites import EvalSequence, Suite

# training seeds with a mix of streets and light (never the evaluation seeds >= 1,000,000)
DEFAULT_SEEDS = (17, 230, 512, 771)
DEFAULT_LOOKS = ("sunset", "night", "sunny", "winter")


def tuning_suite(seeds, looks, frames: int, size: int) -> Suite:
    """Run k: training seed seeds[k] in look looks[k % len(looks)] from frame 0 to the end."""
    seqs = tuple(EvalSequence(s, frames, (looks[k % len(looks)],), ((0, looks[k % len(looks)]),))
                 for k, s in enumerate(seeds))
    return Suite("tune", size, size, seqs, drift_window=max(2, frames // 2), split="train")


class Recorder:
    """A renderer wrapped so that the frames at `keep` (run index, frame) are kept: what run_eval scores, as
    it scored it (the runner opens one session per run, in suite order)."""

    def __init__(self, renderer, keep: set[tuple[int, int]]):
        self.r, self.keep, self.kept, self.runs = renderer, keep, {}, 0
        self.name = renderer.name

    def describe(self) -> dict:
        return self.r.describe()

    def open_session(self, spec):
        run, session, rec = self.runs, self.r.open_session(spec), self
        self.runs += 1

        class Session:
            t = 0

            def render(self, frame, out):
                session.render(frame, out)
                if (run, self.t) in rec.keep:
                    rec.kept[(run, self.t)] = np.asarray(out[..., :3], np.float32).copy()
                self.t += 1

            def close(self):
                session.close()

        return Session()

    def close(self) -> None:
        self.r.close()


METRICS = ("psnr", "ssim", "warp", "psnr_early", "psnr_late")


def run_scores(per_frame: list[dict], runs: list[dict], split: int) -> list[dict]:
    """One row per run ({seed, look} of `runs`): psnr, ssim, warp, psnr_early (frames < split), psnr_late (>= split)."""
    rows = []
    for frames, run in zip(per_frame, runs):
        p = np.asarray(frames["psnr"], np.float64)
        rows.append({**run, "psnr": finite_mean(p), "ssim": finite_mean(frames["ssim"]), "warp": finite_mean(frames["warp"]),
                     "psnr_early": finite_mean(p[:split]), "psnr_late": finite_mean(p[split:])})
    return rows


def aggregate(rows: list[dict]) -> dict:
    """Per look (the mean over its runs) and "mean" (the mean over looks, each look weighing the same)."""
    by_look: dict[str, list[dict]] = {}
    for r in rows:
        by_look.setdefault(r["look"], []).append(r)
    per = {look: {k: float(np.mean([r[k] for r in rs])) for k in METRICS} for look, rs in by_look.items()}
    per["mean"] = {k: float(np.mean([per[l][k] for l in by_look])) for k in METRICS}
    return per


def option_of(result: dict) -> str:
    return result.get("option", "history_noise")  # sweeps from before --option swept the history noise


def parse_values(option: str, values: list[str]) -> list:
    """The swept values as numbers: floats for history_noise (as before), else integers where they are (a value the
    spec parser refuses fails there, with its message)."""
    out = []
    for v in values:
        try:
            out.append(float(v) if option == "history_noise" else (int(v) if v.lstrip("-").isdigit() else float(v)))
        except ValueError:
            raise SystemExit(f"--values: {v!r} is not a number")
    return out


def table(result: dict) -> str:
    looks = [l for l in result["looks"]]
    lines = [f"| {option_of(result)} | " + " | ".join(f"{l} PSNR" for l in looks)
             + " | mean PSNR | SSIM | warp (1e-3) | PSNR frames <{s} / >={s} |".format(s=result["split_frame"]),
             "|" + "---|" * (len(looks) + 5)]
    for name, s in result["arms"].items():
        m = s["mean"]
        lines.append(f"| {name} | " + " | ".join(f"{s[l]['psnr']:.2f}" for l in looks)
                     + f" | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['warp'] * 1e3:.3f} | {m['psnr_early']:.2f} / {m['psnr_late']:.2f} |")
    return "\n".join(lines)


def per_look_table(result: dict) -> str:
    """Per look and value: PSNR, SSIM, warping error, PSNR first / second half."""
    lines = [f"| look | {option_of(result)} | PSNR | SSIM | warp (1e-3) | PSNR first half / second half |", "|---|---|---|---|---|---|"]
    for l in result["looks"]:
        for name, s in result["arms"].items():
            r = s[l]
            lines.append(f"| {l} | {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['warp'] * 1e3:.3f} | "
                         f"{r['psnr_early']:.2f} / {r['psnr_late']:.2f} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = result["values"]
    names = [n for n in result["arms"] if n in result["value_arms"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, l in enumerate(list(result["looks"]) + ["mean"]):
        kw = dict(color="black", lw=2.5) if l == "mean" else dict(color=f"C{i}")
        axes[0].plot(xs, [result["arms"][n][l]["psnr"] for n in names], "o-", label=l, **kw)
        axes[1].plot(xs, [result["arms"][n][l]["warp"] * 1e3 for n in names], "o-", label=l, **kw)
        axes[2].plot(xs, [result["arms"][n][l]["psnr_late"] - result["arms"][n][l]["psnr_early"] for n in names],
                     "o-", label=l, **kw)
    s = result["split_frame"]
    for ax, title in zip(axes, ("PSNR vs reference look (dB)", "warping error (1e-3)",
                                f"PSNR frames >={s} minus <{s} (dB)")):
        ax.set_xlabel(option_of(result)), ax.set_title(title, fontsize=9), ax.grid(alpha=0.3)
    floor = result["baselines"]["reference"]["mean"]["warp"] * 1e3
    axes[1].axhline(floor, color="gray", ls="--", lw=1, label="reference look's own (mean)")
    axes[1].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{result['model']}, {result['size']}x{result['size']}, {result['frames']} frames per run, "
                 f"training seeds {result['seeds']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def frames_grid(clip, look: str, t: int, kept: dict[str, np.ndarray], path: Path) -> None:
    """One row: engine pass, reference, then each value's output at frame t (PSNR in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neural_renderer.eval import metrics

    ref = np.asarray(clip.reference[look][t], np.float32)
    imgs = [(f"frame {t}: engine pass", np.asarray(clip.engine["color"][t], np.float32)), (f"reference ({look})", ref)]
    imgs += [(f"{n}: {metrics.psnr(np.clip(im, 0, 1), ref):.2f} dB", im) for n, im in kept.items()]
    fig, axes = plt.subplots(1, len(imgs), figsize=(2.6 * len(imgs), 2.9))
    for ax, (title, im) in zip(axes, imgs):
        ax.imshow(np.clip(im, 0, 1)), ax.set_title(title, fontsize=7), ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="generator spec: a shipped size or a checkpoint path")
    ap.add_argument("--option", default="history_noise",
                    help="the renderer spec option swept (history_noise, sink_every, ...): generator:MODEL?OPTION=VALUE")
    ap.add_argument("--values", nargs="+", default=None,
                    help="the option's values (default for history_noise: 0 0.05 0.1 0.2 0.3)")
    ap.add_argument("--arms", nargs="*", default=[], help="extra renderer specs scored beside the sweep "
                                                          "(e.g. 'generator:tiny?context=0&history=0', the stateless run)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="training seeds, one run each")
    ap.add_argument("--looks", nargs="+", default=list(DEFAULT_LOOKS), help="run k's look: looks[k %% len(looks)]")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--split-frame", type=int, default=None, help="first frame of the 'late' half (default frames/2)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default). On a shared 2-core "
                    "machine 1 is ~6x faster than 2: two OpenMP threads spin-wait on each other when a core is taken")
    ap.add_argument("--sample-frames", type=int, nargs="*", default=[100], help="frames kept of each run for the grids")
    ap.add_argument("--out", required=True)
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="no sweep: pool the runs of earlier sweeps (same values, frames, size) into one table and plot")
    a = ap.parse_args()
    if a.values is None:
        if a.option != "history_noise" and not a.merge:
            ap.error(f"--values is needed for --option {a.option}")
        a.values = ["0", "0.05", "0.1", "0.2", "0.3"]
    a.values = parse_values(a.option, a.values)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = merge([json.loads(Path(f).read_text()) for f in a.merge]) if a.merge else sweep(a, out)
    stem = f"tune_{option_of(result)}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(result, out / f"{stem}.png")
    e, ref = result["baselines"]["engine"]["mean"], result["baselines"]["reference"]["mean"]
    md = table(result) + "\n\n" + per_look_table(result)
    md += (f"\n\nEngine pass: PSNR {e['psnr']:.2f} dB, SSIM {e['ssim']:.3f}; the reference look's own warping error "
           f"(the floor): {ref['warp'] * 1e3:.3f}e-3.")
    (out / f"{stem}.md").write_text(md + "\n")
    print(md)


def sweep(a, out: Path) -> dict:
    """Every value (and extra arm) through run_eval on the tuning suite; the frame grids written to `out`."""
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    suite = tuning_suite(a.seeds, a.looks, a.frames, a.size)
    looks = [q.styles[0] for q in suite.sequences]
    split = a.split_frame if a.split_frame is not None else a.frames // 2
    keep = {(k, t) for k in range(len(suite.sequences)) for t in a.sample_frames if t < a.frames}

    from bridge.backends import create_renderer

    specs = {f"{v:g}": f"generator:{a.model}?{a.option}={v:g}" for v in a.values}
    specs.update({spec: spec for spec in a.arms})
    result = {"option": a.option, "model": a.model, "size": a.size, "frames": a.frames, "split_frame": split, "seeds": a.seeds,
              "runs": [{"seed": q.seed, "look": l} for q, l in zip(suite.sequences, looks)], "steps": a.steps,
              "values": a.values, "value_arms": [f"{v:g}" for v in a.values], "specs": specs,
              "looks": list(dict.fromkeys(looks)), "arms": {}, "per_run": {}, "hosts": {}, "seconds": {}}
    kept: dict[str, dict] = {}
    caches = None
    for name, spec in specs.items():
        rec = Recorder(create_renderer(spec, steps=a.steps, device=a.device), keep)
        r = run_eval(rec, suite, steps=a.steps, device=a.device)
        assert r["split"] == "train"
        label = next(k for k in r["systems"] if k not in ("engine", "reference"))
        result["per_run"][name] = run_scores(r["systems"][label]["per_frame"], result["runs"], split)
        result["hosts"][name], result["seconds"][name] = r["hosts"][label], r["seconds"]
        kept[name] = rec.kept
        if caches is None:  # the same frames every time: the engine pass and the reference once
            for b in ("engine", "reference"):
                result["per_run"][b] = run_scores(r["systems"][b]["per_frame"], result["runs"], split)
            caches = [s["cache"] for s in r["sequences"]]
        m = aggregate(result["per_run"][name])["mean"]
        print(f"{name}: mean PSNR {m['psnr']:.2f} dB, warp {m['warp'] * 1e3:.3f}e-3", flush=True)
    summarise(result)
    from neural_renderer.data import SequenceDataset

    for k, (q, look) in enumerate(zip(suite.sequences, looks)):
        clip = SequenceDataset(caches[k], split="train").clip(0)
        for t in a.sample_frames:
            if (k, t) in keep:
                frames_grid(clip, look, t, {n: kept[n][(k, t)] for n in specs}, out / f"frames_{look}_seed{q.seed}_t{t}.png")
    return result


def summarise(result: dict) -> None:
    """arms and baselines (per look and mean) from the per-run rows."""
    result["arms"] = {n: aggregate(rows) for n, rows in result["per_run"].items() if n not in ("engine", "reference")}
    result["baselines"] = {b: aggregate(result["per_run"][b]) for b in ("engine", "reference")}


def merge(results: list[dict]) -> dict:
    """The runs of several sweeps of the same values on the same frame count and size, as one sweep of all their runs
    (the arms every sweep scored: an extra arm of one sweep alone is left out)."""
    first = results[0]
    arms = [n for n in first["per_run"] if all(n in r["per_run"] for r in results)]
    for r in results[1:]:
        if option_of(r) != option_of(first):
            raise SystemExit(f"cannot merge: option differs ({option_of(first)!r} vs {option_of(r)!r})")
        for k in ("model", "size", "frames", "split_frame", "steps", "values"):
            if r[k] != first[k]:
                raise SystemExit(f"cannot merge: {k} differs ({first[k]!r} vs {r[k]!r})")
    seen = [x["seed"] for r in results for x in r["runs"]]
    if len(set(seen)) != len(seen):
        raise SystemExit(f"cannot merge: a seed appears twice ({seen})")
    merged = {"option": option_of(first), **{k: first[k] for k in ("model", "size", "frames", "split_frame", "steps",
                                                                   "values", "value_arms")}}
    merged.update(seeds=seen, runs=[x for r in results for x in r["runs"]], specs={n: first["specs"][n] for n in
                                                                               first["specs"] if n in arms},
                  looks=list(dict.fromkeys(l for r in results for l in r["looks"])),
                  per_run={n: [x for r in results for x in r["per_run"][n]] for n in arms},
                  hosts={n: first["hosts"][n] for n in first["hosts"] if n in arms},
                  seconds={n: sum(r["seconds"][n] for r in results) for n in first["seconds"] if n in arms},
                  merged_from=len(results))
    summarise(merged)
    return merged


if __name__ == "__main__":
    main()
