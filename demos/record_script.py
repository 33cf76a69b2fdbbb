"""`neurender demo --record NAME`: a scripted player plays the demo scene through the daemon, which
records every frame (engine channels, the reference look of --style as the game's own frame `final`,
actions, camera constants, resets) into <recordings root>/NAME/. One session per sequence, each a
different world seed, so the loop record -> `neurender train --data` -> serve -> `neurender eval --data`
can be shown without Unity."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

COMMIT_WAIT_S = 30.0  # the daemon commits a sequence's index entry after the session closes


def wait_for_sequences(directory: Path, count: int, timeout: float = COMMIT_WAIT_S) -> dict | None:
    """The recording's index once it lists at least `count` sequences (None after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            index = json.loads((directory / "index.json").read_text())
            if len(index.get("sequences", [])) >= count:
                return index
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    return None


def run_record(args, log=print) -> int:
    from tqdm import tqdm

    from demos.daemon_link import DaemonLink
    from demos.gl import create_context
    from demos.live import LiveScene
    from demos.player import ScriptedController

    if args.recordings_dir:  # for a daemon the demo starts itself (one already serving keeps its own)
        os.environ["NEURENDER_RECORDINGS_DIR"] = str(Path(args.recordings_dir).resolve())
    width, height = args.resolution
    dt = 1.0 / args.fps
    ctx = create_context(headless=True)
    link = None
    failed = None
    try:
        link = DaemonLink(args.backend, args.steps, args.runtime_dir, args.endpoint, args.device, log=log)
        before = None
        directory = None
        for k in range(args.sequences):
            seed = args.seed + k
            scene = LiveScene(ctx, link.client, seed, width, height, args.style, steps=args.steps, ssaa=args.ssaa,
                              record=args.record)
            try:
                directory = Path(scene.session.record["dir"])
                if before is None:
                    before = _sequences_in(directory)
                ctrl = ScriptedController(args.script, seed, fps=args.fps)
                scene.player.teleport(*ctrl.spawn(scene.world))
                for i in tqdm(range(args.frames), desc=f"record {args.record} {k + 1}/{args.sequences}",
                              unit="frame"):
                    action, cut = ctrl(i, scene.player)
                    if cut:
                        scene.player.teleport(*ctrl.spawn(scene.world))
                        scene.reset(teleport=False)
                        action = np.zeros_like(action)
                    scene.step(action, dt)
                failed = failed or scene.session.record_error
            finally:
                scene.close()
        index = wait_for_sequences(directory, before + args.sequences)
        if failed is not None:
            log(f"recording stopped: {failed}")
            return 1
        if index is None:
            log(f"the daemon did not commit the recording in {directory} within {COMMIT_WAIT_S:.0f} s")
            return 1
        log(f"recorded {args.sequences} x {args.frames} frames of look {args.record!r} ({args.style} reference) "
            f"into {directory}: {len(index['sequences'])} sequences, {index['meta'].get('frames')} frames in all")
        return 0
    finally:
        if link is not None:
            link.close()
        ctx.release()


def _sequences_in(directory: Path) -> int:
    try:
        return len(json.loads((directory / "index.json").read_text()).get("sequences", []))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
