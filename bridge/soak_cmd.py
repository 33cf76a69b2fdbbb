"""`neurender bench soak --minutes N --sessions K`: a long run of hostile, dying clients against one daemon.

K client processes (bridge/soak_client.py) stream paced frames of mixed sizes and both transports,
with bad messages between good ones. Every `--kill-every` seconds one of them is SIGKILLed (mid-frame,
session open) and replaced; halfway through, the daemon itself is restarted once. The report: frames
rendered, errors by code, frames lost (accepted, never answered) or reordered or answered twice, the
daemon's RSS over time (JSON and a PNG), and the session files left in the shared-memory dir (and
session memories the daemon still holds), both while the daemon runs with every client gone and after
it stopped. Every frame with wrong pixels is listed with what its client did just before and the
soak's own events (kills, the restart) of the seconds before it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=1.0, help="how long the clients stream (default 1)")
    p.add_argument("--sessions", type=int, default=4, help="client processes, one session each at a time")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second each client paces")
    p.add_argument("--kill-every", type=float, default=None, metavar="S",
                   help="SIGKILL a random client every S seconds (default: minutes*60/8, at least 5 s)")
    p.add_argument("--no-restart", action="store_true", help="skip the daemon restart halfway")
    p.add_argument("--backend", default="passthrough")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--plot", default=None, help="PNG of the daemon's RSS over time")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _session_files(shm_dir: Path) -> list[str]:
    return sorted(p.name for p in shm_dir.iterdir() if p.name.startswith("neurender-"))


def _session_memories(pid: int) -> list[str]:
    """The session memories (memfds) the daemon holds open: they live as long as its descriptor."""
    found = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/memfd:neurender-"):
                found.append(target)
    except OSError:
        pass
    return sorted(found)


EVENT_WINDOW_S = 10.0  # soak events this long before a wrong frame are listed with it


def _wrong_frames(work: Path, events: list) -> list[dict]:
    """The clients' wrong-frame records, each with the soak's events of the seconds before it."""
    out = []
    for f in sorted(work.glob("client*.json.wrong.jsonl")):
        for line in f.read_text().splitlines():
            try:
                w = json.loads(line)
            except ValueError:  # a line cut by a SIGKILL
                continue
            w["soak_events_before"] = [e for e in events if w["t"] - EVENT_WINDOW_S <= e[0] <= w["t"]]
            out.append(w)
    return sorted(out, key=lambda w: w["t"])


def soak(minutes: float, sessions: int, fps: float = 30.0, kill_every: float | None = None,
         restart: bool = True, backend: str = "passthrough", seed: int = 0, log=print) -> dict:
    from bridge.daemon import spawn_daemon

    rng = random.Random(seed)
    duration = minutes * 60.0
    kill_every = kill_every or max(5.0, duration / 8)
    work = Path(tempfile.mkdtemp(prefix="nr-soak-"))
    shm_base = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
    shm_dir = Path(tempfile.mkdtemp(prefix="nr-soak-", dir=shm_base))
    runtime = work / "rt"

    def start_daemon():
        return spawn_daemon(backend, runtime_dir=runtime, shm_dir=shm_dir, timeout=300.0)

    daemon = start_daemon()
    endpoint = daemon.endpoint
    generation = Counter()
    procs: dict[int, subprocess.Popen] = {}

    def start_client(i: int) -> None:
        generation[i] += 1
        stats = work / f"client{i}-{generation[i]}.json"
        procs[i] = subprocess.Popen([sys.executable, "-m", "bridge.soak_client", "--endpoint", endpoint,
                                     "--index", str(i), "--seed", str(seed * 1000 + i * 100 + generation[i]),
                                     "--stats", str(stats), "--fps", str(fps)])

    for i in range(sessions):
        start_client(i)
    t0 = time.monotonic()
    rss, kills, restarts, files_seen_max = [], 0, [], 0
    events: list = [(round(time.time(), 3), "soak started")]  # (wall time, what): beside the clients' logs
    next_kill = t0 + kill_every
    restart_at = t0 + duration / 2 if restart else float("inf")
    try:
        while (now := time.monotonic()) - t0 < duration:
            rss.append([round(now - t0, 1), rss_kib(daemon.pid), len(restarts)])
            files_seen_max = max(files_seen_max, len(_session_files(shm_dir)))
            if now >= next_kill:
                i = rng.randrange(sessions)
                procs[i].kill()
                procs[i].wait()
                kills += 1
                events.append((round(time.time(), 3), f"client {i} SIGKILLed"))
                start_client(i)
                next_kill = now + kill_every
            if now >= restart_at:
                log(f"soak: restarting the daemon at {now - t0:.0f} s")
                events.append((round(time.time(), 3), "daemon stopping"))
                rc = daemon.stop()
                events.append((round(time.time(), 3), f"daemon stopped (exit {rc})"))
                restarts.append({"at_s": round(now - t0, 1), "exit_code": rc,
                                 "files_left_by_old_daemon": _session_files(shm_dir)})
                daemon = start_daemon()
                events.append((round(time.time(), 3), f"daemon restarted (pid {daemon.pid})"))
                restart_at = float("inf")
            for i, p in procs.items():  # a client that died by itself is a finding: restart and count it
                if p.poll() is not None:
                    restarts.append({"client_exit": i, "code": p.returncode, "at_s": round(now - t0, 1)})
                    events.append((round(time.time(), 3), f"client {i} exited by itself ({p.returncode})"))
                    start_client(i)
            time.sleep(1.0)
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # sessions of the clients stopped last end by the daemon's lock probe or, at the latest, its idle timeout
        # (15 s): wait for that rather than a fixed time, which a loaded machine can outlast
        deadline = time.monotonic() + 20.0
        while True:
            files_live = _session_files(shm_dir)
            memories_live = _session_memories(daemon.pid)
            if not (files_live or memories_live) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        welcome_rss = rss_kib(daemon.pid)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        code = daemon.stop()
    files_after = _session_files(shm_dir)
    totals, errors = Counter(), Counter()
    for f in sorted(work.glob("client*.json")):
        d = json.loads(f.read_text())
        totals.update(d["counters"])
        errors.update(d["errors"])
    wrong = _wrong_frames(work, events)
    for f in shm_dir.iterdir():
        f.unlink()
    shm_dir.rmdir()
    samples = [r for r in rss if r[1] is not None]
    first = [r[1] for r in samples if r[0] >= min(60.0, duration / 4)][:10] or [r[1] for r in samples[:1]]
    last = [r[1] for r in samples[-10:]]
    report = {
        "minutes": minutes, "sessions": sessions, "fps_per_client": fps, "backend": backend,
        "client_kills": kills, "daemon_restarts": [r for r in restarts if "exit_code" in r],
        "client_crashes": [r for r in restarts if "client_exit" in r],
        "frames_submitted": totals["submitted"], "frames_rendered": totals["rendered"],
        "frames_dropped": totals["dropped"], "frames_lost": totals["lost"],
        "frames_lost_in_daemon_restart": totals["lost_in_restart"], "frames_reordered": totals["reordered"],
        "frames_answered_twice": totals["answered_twice"], "wrong_pixels": totals["wrong_pixels"],
        "nan_frames_repaired": totals["nan_frames_repaired"], "nan_frames_not_repaired": totals["nan_frames_not_repaired"],
        "sessions_opened": totals["sessions"], "sessions_closed_cleanly": totals["sessions_closed"],
        "bad_messages_sent": totals["bad_sent"], "bad_messages_answered": totals["bad_answered"],
        "errors_by_code": dict(sorted(errors.items())),
        "session_files_max_seen": files_seen_max, "session_files_left_daemon_running": files_live,
        "session_files_left_after_stop": files_after, "session_memories_left_daemon_running": memories_live,
        "wrong_frames": wrong, "daemon_exit_code": code,
        "rss_kib_start": int(sum(first) / len(first)) if first else None,
        "rss_kib_end": int(sum(last) / len(last)) if last else None, "rss_kib_final": welcome_rss,
        "rss_kib_max": max((r[1] for r in samples), default=None),
        "rss": rss,
    }
    for p in work.iterdir():
        p.unlink() if p.is_file() else None
    return report


def plot(report: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r[0] / 60 for r in report["rss"] if r[1] is not None]
    m = [r[1] / 1024 for r in report["rss"] if r[1] is not None]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(t, m, lw=1)
    for r in report["daemon_restarts"]:
        ax.axvline(r["at_s"] / 60, color="k", ls="--", lw=0.8, label="daemon restart")
    ax.set_xlabel("minutes")
    ax.set_ylabel("daemon RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"neurender bench soak: {report['sessions']} clients, {report['minutes']:g} min, "
                 f"{report['frames_rendered']} frames, {report['client_kills']} client kills", fontsize=9)
    if report["daemon_restarts"]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    report = soak(args.minutes, args.sessions, args.fps, args.kill_every, not args.no_restart, args.backend,
                  args.seed, log=lambda m: print(m, file=sys.stderr))
    summary = {k: v for k, v in report.items() if k != "rss"}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.plot:
        plot(report, args.plot)
    bad = (report["frames_lost"] or report["frames_reordered"] or report["frames_answered_twice"]
           or report["wrong_pixels"] or report["nan_frames_not_repaired"] or report["session_files_left_after_stop"]
           or report["session_files_left_daemon_running"] or report["session_memories_left_daemon_running"]
           or report["client_crashes"])
    return 1 if bad else 0


if __name__ == "__main__":
    _p = argparse.ArgumentParser(prog="neurender bench soak")
    configure(_p)
    sys.exit(run(_p.parse_args()))
