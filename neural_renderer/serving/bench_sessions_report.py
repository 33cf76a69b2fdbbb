"""What `neurender bench sessions` leaves for a person: a table on stdout and a PNG (answered frames/s and latency
p99 per session count, with the target and the limit drawn, and the frames each forward carried)."""
from __future__ import annotations


def rows_of(res: dict) -> list[dict]:
    """The sweep's rows, then the long run when it is not one of them."""
    rows = list(res["counts"])
    if res.get("long") is not None and not any(r is res["long"] or r == res["long"] for r in rows):
        rows.append(res["long"])
    return rows


def table(res: dict) -> str:
    wait = res.get("batch_wait_ms")
    window = "serve's default" if wait is None else f"{wait:g} ms"
    head = (f"{res['width']}x{res['height']} at {res['fps']:g} frames/s, {res['model']} ({res['renderer'].get('kernels')}, "
            f"{res['dtype']}, {res['steps']} steps) on {res['device_name']}, phase {res['phase']}, "
            f"batch wait {window}; "
            f"hold: {res['hold_rule']}")
    cols = (f"{'sessions':>8}{'s':>5}{'held':>8}{'min fps':>9}{'p50 ms':>8}{'p99 ms':>8}{'dropped':>8}{'missed':>7}"
            f"{'late':>6}{'per fwd':>8}{'render ms':>10}{'wait max':>9}")
    lines = [head, cols]
    for r in rows_of(res):
        lines.append(f"{r['sessions']:>8}{r['seconds']:>5g}{r['sessions_held']:>4}/{r['sessions']:<3}{r['fps_min']:>9.2f}"
                     f"{r['latency_p50_ms_median']:>8.2f}{r['latency_p99_ms_max']:>8.2f}{r['dropped']:>8}{r['missed']:>7}"
                     f"{r['late']:>6}{r['batch_mean']:>8.2f}{r['render_p50_ms_median']:>10.2f}"
                     f"{r.get('batch_wait_max_ms', 0.0):>9.2f}")
        for k, why in r["reasons"].items():
            lines.append(f"{'':>10}session {k}: {'; '.join(why)}")
    lines.append(f"largest count that held: {res['largest_held'] or 'none'}")
    if res.get("long") is not None:
        lo = res["long"]
        lines.append(f"{lo['sessions']} sessions for {lo['seconds']:g} s: {'held' if lo['held'] else 'NOT held'}")
    return "\n".join(lines)


def plot(res: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows_of(res)
    x = range(len(rows))
    labels = [f"{r['sessions']}" + ("" if r["seconds"] == rows[0]["seconds"] else f"\n({r['seconds']:g} s)")
              for r in rows]
    colour = ["tab:green" if r["held"] else "tab:red" for r in rows]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.5))
    a.bar(x, [r["fps_min"] for r in rows], color=colour, label="slowest session")
    a.plot(x, [r["fps_total"] / max(1, r["sessions"]) for r in rows], "ko", label="mean of sessions")
    a.axhline(res["fps"], color="k", ls="--", lw=1, label=f"target {res['fps']:g}")
    a.set_ylabel("answered frames/s per session")
    b.bar(x, [r["latency_p99_ms_max"] for r in rows], color=colour, label="p99, worst session")
    b.plot(x, [r["latency_p50_ms_median"] for r in rows], "ko", label="p50, median session")
    b.axhline(res["p99_ms"], color="k", ls="--", lw=1, label=f"limit {res['p99_ms']:g} ms")
    b.set_ylabel("submit -> result in hand, ms")
    c.bar(x, [r["batch_mean"] for r in rows], color="tab:blue")
    c.set_ylabel("frames per forward (daemon batching)")
    for ax in (a, b, c):
        ax.set_xticks(list(x), labels)
        ax.set_xlabel("sessions (green: every session held)")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    fig.suptitle(f"bench sessions: {res['model']} {res['width']}x{res['height']} at {res['fps']:g} frames/s on "
                 f"{res['device_name']}; largest count held: {res['largest_held'] or 'none'}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
