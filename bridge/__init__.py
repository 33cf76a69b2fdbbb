"""The daemon and its Python client: ZeroMQ + msgpack control, shared-memory pixels.

Wire format: docs/protocol.md (and bridge/protocol.py, which decodes and validates it).
  server.py      the daemon: ROUTER sockets, sessions, liveness, replies (`neurender serve`: serve_cmd.py)
  session.py     one session's state and shared-memory files;  shm.py the files;  layout.py their layout
  worker.py      the render thread: owns the Renderer, newest frame wins
  backends/      the Renderer interface and `create_renderer(spec)`; passthrough.py
  client.py      Client / Session / FrameResult;  daemon.py spawn_daemon, ensure_local_daemon
  keys.py        CURVE keys and the allow-list (`neurender keys`: keys_cmd.py);  paths.py where things live
  bench_cmd.py   `neurender bench bridge`
"""
