"""`neurender serve`: run the rendering daemon in the foreground until SIGINT/SIGTERM."""
from __future__ import annotations

import argparse

from bridge.backends import DEFAULT_BACKEND
from bridge.protocol import HEARTBEAT_MS, SESSION_TIMEOUT_MS
from bridge.render_thread import BATCH_WAIT_S


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=DEFAULT_BACKEND,
                   help="renderer: passthrough | generator[:tiny|:base|:tiny-shortcut|:/path/ckpt.safetensors] "
                        f"(default {DEFAULT_BACKEND}: the shipped base model on a CUDA GPU, tiny otherwise)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (backend default if absent)")
    p.add_argument("--device", default=None, help="torch device for model backends (e.g. cuda, cpu)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="precision of model backends (default: bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--kernels", default=None, metavar="ARM",
                   help="how a model backend runs its step: auto (its default: the fastest implementation that "
                        "passes its self-check on this machine) or one it names; the chosen one is in `renderer`")
    pool = p.add_mutually_exclusive_group()
    pool.add_argument("--gpus", default=None, metavar="all|N|0,1",
                      help="one render worker process per GPU (CUDA_VISIBLE_DEVICES pinned); new sessions go to "
                           "the least-loaded one (bridge/worker_pool.py)")
    pool.add_argument("--workers", type=int, default=None, metavar="N",
                      help="N render worker processes on --device (CPU testing of the multi-GPU path); "
                           "default: one render thread in the daemon")
    p.add_argument("--batch-wait-ms", type=float, default=BATCH_WAIT_S * 1e3, metavar="MS",
                   help="render thread: hold a frame at most MS for frames of sessions it batches with that are due "
                        f"now (games ticking together); 0: only frames already waiting (default {BATCH_WAIT_S * 1e3:g}; "
                        "bridge/render_thread.py says why; not with --gpus/--workers, which do not batch)")
    p.add_argument("--render-timeout", type=float, default=None, metavar="S",
                   help="with --gpus/--workers: restart a worker whose frame takes longer than S seconds (its "
                        "sessions get worker_lost); default never (first frames may compile)")
    p.add_argument("--runtime-dir", default=None,
                   help="0700 dir for the ipc socket and pid file (default $XDG_RUNTIME_DIR/neurender or "
                        "/tmp/neurender-$UID; env NEURENDER_RUNTIME_DIR)")
    p.add_argument("--no-ipc", action="store_true", help="serve only on --tcp")
    p.add_argument("--tcp", metavar="HOST:PORT", default=None, help="also serve on TCP (CURVE unless --insecure)")
    p.add_argument("--insecure", action="store_true", help="plain TCP without CURVE; loopback addresses only")
    p.add_argument("--keys-dir", default=None, help="CURVE keys (default ~/.config/neurender/keys; env "
                   "NEURENDER_KEYS_DIR); see `neurender keys`")
    p.add_argument("--shm-dir", default=None, help="where session files go (default /dev/shm; env NEURENDER_SHM_DIR)")
    rec = p.add_mutually_exclusive_group()
    rec.add_argument("--recordings-dir", default=None,
                     help="where sessions opened with `record: NAME` are written, one dataset per NAME (default "
                          "$NEURENDER_RECORDINGS_DIR or ~/.local/share/neurender/recordings)")
    rec.add_argument("--no-record", action="store_true", help="refuse sessions that ask to be recorded")
    p.add_argument("--max-sessions", type=int, default=8)
    p.add_argument("--max-sessions-per-client", type=int, default=4,
                   help="sessions one client may hold (per CURVE key over TCP, per connection on ipc)")
    p.add_argument("--max-steps", type=int, default=32,
                   help="largest `steps` a session may ask for (one frame must not hold the render thread long)")
    p.add_argument("--max-width", type=int, default=4096)
    p.add_argument("--max-height", type=int, default=4096)
    p.add_argument("--max-channels", type=int, default=None, help="default: every known channel")
    p.add_argument("--heartbeat-ms", type=int, default=HEARTBEAT_MS, help="how often clients should ping")
    p.add_argument("--session-timeout-ms", type=int, default=SESSION_TIMEOUT_MS,
                   help="close a session not heard of for this long (default 1200: a dead client is gone within 2 s)")
    p.add_argument("--switch-interval-ms", type=float, default=0.5,
                   help="Python GIL switch interval in the daemon (default 0.5; Python's own is 5)")
    p.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import sys
    from pathlib import Path

    from bridge import paths, protocol, shm, worker_pool
    from bridge.backends import BackendUnavailable, create_renderer
    from bridge.server import Daemon, DaemonConfig, install_signal_handlers
    from bridge.worker_pool import WorkerStartError

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s neurender serve %(levelname)s %(message)s")
    log = logging.getLogger("neurender.bridge")
    runtime = paths.ensure_private_dir(Path(args.runtime_dir) if args.runtime_dir else paths.default_runtime_dir())
    ipc = None if args.no_ipc else paths.ipc_endpoint(runtime)
    if ipc:
        from bridge.daemon import local_daemon_alive
        alive = local_daemon_alive(ipc)
        if alive:
            print(f"neurender serve: a daemon (pid {alive.get('pid')}) already serves {ipc}", file=sys.stderr)
            return 1
        sock_path = Path(ipc[len("ipc://"):])
        if sock_path.exists():
            sock_path.unlink()  # stale socket of a dead daemon

    server_keys = allowed_dir = None
    if args.tcp and not args.insecure:
        from bridge import keys
        kdir = Path(args.keys_dir) if args.keys_dir else paths.default_keys_dir()
        server_keys = keys.ensure_server_keys(kdir)
        allowed_dir = kdir / "allowed"
        allowed_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not keys.allowed(kdir):
            log.warning("no client key is allowed yet in %s: run `neurender keys add NAME`", allowed_dir)

    shm_dir = Path(args.shm_dir) if args.shm_dir else shm.default_shm_dir()
    if not shm_dir.is_dir() or not os.access(shm_dir, os.W_OK):
        print(f"neurender serve: shared-memory dir {shm_dir} does not exist or is not writable", file=sys.stderr)
        return 2
    worker_factory = None
    if args.render_timeout is not None and args.gpus is None and args.workers is None:
        print("neurender serve: --render-timeout needs --gpus or --workers (a render thread cannot be killed)",
              file=sys.stderr)
        return 2
    if args.gpus is not None or args.workers is not None:
        try:
            specs = worker_pool.worker_specs({"steps": args.steps, "device": args.device, "dtype": args.dtype,
                                                  "kernels": args.kernels},
                                         gpus=worker_pool.parse_gpus(args.gpus, worker_pool.visible_gpus())
                                         if args.gpus is not None else None, workers=args.workers)
        except ValueError as e:
            print(f"neurender serve: {e}", file=sys.stderr)
            return 2
        renderer = worker_pool.PoolRenderer()

        def worker_factory(wake):
            renderer.pool = worker_pool.WorkerPool(args.backend, specs, wake, shm_dir,
                                               render_timeout=args.render_timeout)
            return renderer.pool
    else:
        try:
            renderer = create_renderer(args.backend, steps=args.steps, device=args.device, dtype=args.dtype,
                                       kernels=args.kernels)
        except BackendUnavailable as e:
            print(f"neurender serve: {e}", file=sys.stderr)
            return 2
    limits = protocol.Limits(max_width=args.max_width, max_height=args.max_height,
                             max_sessions=args.max_sessions, max_steps=args.max_steps,
                             max_sessions_per_client=args.max_sessions_per_client,
                             **({"max_channels": args.max_channels} if args.max_channels else {}))
    cfg = DaemonConfig(ipc_endpoint=ipc, tcp=args.tcp, insecure=args.insecure, server_keys=server_keys,
                       allowed_keys_dir=allowed_dir, limits=limits, heartbeat_ms=args.heartbeat_ms,
                       session_timeout_ms=args.session_timeout_ms, batch_wait_ms=max(0.0, args.batch_wait_ms),
                       shm_dir=shm_dir, **_recordings(args))
    try:
        daemon = Daemon(renderer, cfg, worker_factory=worker_factory)
    except (ValueError, OSError, WorkerStartError) as e:
        print(f"neurender serve: {e}", file=sys.stderr)
        return 2
    install_signal_handlers(daemon)
    # The socket loop and the render worker share the GIL: with the default 5 ms switch interval a
    # reply can wait that long for the worker's Python code to yield. 0.5 ms bounds that wait.
    sys.setswitchinterval(args.switch_interval_ms / 1e3)
    pid_file = runtime / paths.PID_NAME
    pid_file.write_text(f"{os.getpid()}\n")
    info = {"pid": os.getpid(), "endpoints": daemon.endpoints, "renderer": renderer.describe(),
            "server_public_key": server_keys[0].decode() if server_keys else None,
            "shm_dir": str(cfg.shm_dir), "recordings_dir": str(cfg.recordings_dir) if cfg.recordings_dir else None,
            "swept": [str(p) for p in daemon.swept],
            "workers": daemon.worker.info() if daemon.pooled else None}
    for ep in daemon.endpoints:
        log.info("serving %s", ep)
    log.info("renderer %s", info["renderer"])
    # one machine-readable line on stdout: bridge.daemon.spawn_daemon waits for it
    print("READY " + json.dumps(info), flush=True)
    # spawn_daemon stops reading stdout after READY: anything a backend prints later goes to stderr
    # instead of failing with a broken pipe
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        daemon.serve_forever()
    finally:
        try:
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        except FileNotFoundError:
            pass
    return 0


def _recordings(args) -> dict:
    from pathlib import Path

    if args.no_record:
        return {"recordings_dir": None}
    return {"recordings_dir": Path(args.recordings_dir)} if args.recordings_dir else {}


if __name__ == "__main__":
    # `python -m bridge.serve_cmd ...` = `neurender serve ...` without building every other subcommand's
    # parser (spawn_daemon uses this: a broken or heavy import elsewhere cannot stop the daemon)
    import sys

    _parser = argparse.ArgumentParser(prog="neurender serve", description="run the rendering daemon")
    configure(_parser)
    sys.exit(run(_parser.parse_args()))
