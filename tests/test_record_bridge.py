"""Recording sessions in the daemon (bridge/recorder.py): what a client sends is what the dataset reader
reads back, byte for byte; a SIGKILLed client leaves a readable dataset; a full disk ends the recording
with a typed error while the session keeps rendering; every bad `record` request is refused at open."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from _bridge_helpers import inproc_daemon
from bridge.channels import ACTION_DIM, CONSTANTS_LAYOUT
from bridge.client import BridgeError, Client
from bridge.daemon import spawn_daemon
from bridge.dataset_format import NPY_HEADER_BYTES, flatten_constants, read_npy_header
from neural_renderer.data import DatasetError, SequenceDataset

REPO = Path(__file__).resolve().parents[1]
# every channel in its storage dtype (docs/dataset.md), so the bytes must come back unchanged
STORED = {"color": "float16", "depth": "float32", "normals": "float16", "motion": "float32", "albedo": "float16",
          "material_id": "uint16", "disocclusion": "uint8", "final": "float16"}
COMPONENTS = {"color": 3, "depth": 1, "normals": 3, "motion": 2, "albedo": 3, "material_id": 1, "disocclusion": 1,
              "final": 3}


def wait_index(d: Path, sequences: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            index = json.loads((d / "index.json").read_text())
            if len(index["sequences"]) >= sequences:
                return index
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{d}: no index with {sequences} sequences within {timeout} s")


def frame(rng, w, h):
    px = {}
    for name, dt in STORED.items():
        shape = (h, w, COMPONENTS[name])
        if dt == "uint16":
            px[name] = rng.integers(0, 65535, shape, dtype=np.uint16)
        elif dt == "uint8":
            px[name] = rng.integers(0, 2, shape, dtype=np.uint8)
        else:
            px[name] = rng.normal(size=shape).astype(dt)
    return px


def constants(rng):
    return {k: rng.normal(size=n).astype(np.float32).tolist() for k, n in CONSTANTS_LAYOUT.items()}


@pytest.fixture
def recording_daemon(tmp_path):
    rec = tmp_path / "recordings"
    with spawn_daemon("passthrough", runtime_dir="private", extra_args=["--recordings-dir", str(rec)]) as d:
        yield d, rec


def test_recorded_sessions_read_back_byte_exact(recording_daemon):
    d, rec = recording_daemon
    rng = np.random.default_rng(0)
    w, h = 24, 16
    sent = []  # per session: list of (pixels, constants, action, reset)
    with Client(d.endpoint) as c:
        for transport, n in (("shm", 7), ("inline", 5)):
            s = c.open_session(w, h, STORED, transport=transport, record="my-game_1", output_format="rgb16f")
            assert s.record == {"name": "my-game_1", "dir": str(rec / "my-game_1")}
            frames = []
            for t in range(n):
                px, k, a = frame(rng, w, h), constants(rng), rng.normal(size=ACTION_DIM).astype(np.float32)
                reset = t == 3  # a cut inside the sequence
                r = s.render(px, constants=k, action=a, reset=reset)
                # the renderer never sees `final`: passthrough shows the colour, not the target
                np.testing.assert_array_equal(r.image, px["color"])
                frames.append((px, k, a, reset))
            assert s.record_error is None
            s.close()
            sent.append(frames)
    index = wait_index(rec / "my-game_1", 2)
    assert index["look"] == {"name": "my-game_1", "prompt": "my-game_1"}
    assert index["channels"] == list(STORED) and index["styles"] == []
    ds = SequenceDataset(rec / "my-game_1")
    assert [q.frames for q in ds.sequences] == [7, 5]
    for k, frames in enumerate(sent):
        clip = ds.clip(k)
        for t, (px, kk, a, reset) in enumerate(frames):
            for name in STORED:
                assert clip.engine[name][t].tobytes() == px[name].tobytes(), (k, t, name)
            assert clip.constants[t].tobytes() == flatten_constants(kk).tobytes()
            assert clip.action[t].tobytes() == a.tobytes()
            assert clip.reset[t] == (1 if t == 0 or reset else 0)
    # the header holds the final row count and is exactly the documented 128 bytes
    head = (rec / "my-game_1" / index["shards"][0]["dir"] / "final.npy").read_bytes()[:NPY_HEADER_BYTES]
    assert read_npy_header(head) == ("<f2", (7, h, w, 3))


def test_uint8_colour_and_partial_inputs_are_stored_in_the_format(recording_daemon):
    """8-bit colour becomes [0, 1] float16; constants not sent are zeros; a short action is zero-padded."""
    d, rec = recording_daemon
    with Client(d.endpoint) as c:
        s = c.open_session(8, 8, {"color": "uint8", "final": "uint8"}, action_dim=3, record="bytes")
        s.render({"color": np.full((8, 8, 3), 255, np.uint8), "final": np.full((8, 8, 3), 51, np.uint8)},
                 constants={"dt": [0.02]}, action=[1, 2, 3])
        s.close()
    wait_index(rec / "bytes", 1)
    clip = SequenceDataset(rec / "bytes").clip(0)
    assert clip.engine["color"].dtype == np.float16 and float(clip.engine["color"][0].max()) == 1.0
    np.testing.assert_allclose(clip.engine["final"][0].astype(np.float32), 0.2, atol=1e-3)
    assert clip.constants_at(0)["dt"][0] == np.float32(0.02) and not clip.constants_at(0)["world_to_view"].any()
    assert clip.action[0].tolist() == [1, 2, 3] + [0] * (ACTION_DIM - 3)
    assert SequenceDataset(rec / "bytes").sequences[0].fps == pytest.approx(50.0)


def test_sigkilled_client_leaves_a_readable_dataset(recording_daemon):
    d, rec = recording_daemon
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "_record_client_proc.py"), d.endpoint, "killed"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        info = json.loads(proc.stdout.readline())
        assert info["record"]["name"] == "killed"
        time.sleep(1.0)  # frames stream meanwhile
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    index = wait_index(rec / "killed", 1)
    ds = SequenceDataset(rec / "killed")
    clip = ds.clip(0)
    n = len(clip)
    assert n >= 2
    # frames in order and complete: colour k/1000, final 1 - k/1000 (float16), dropped frames aside
    c = clip.engine["color"][:, 0, 0, 0].astype(np.float32)
    f = clip.engine["final"][:, 0, 0, 0].astype(np.float32)
    assert np.all(np.diff(c) > 0)
    np.testing.assert_allclose(c + f, 1.0, atol=2e-3)
    assert index["meta"]["frames"] == n


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk_ends_the_recording_with_its_error_and_the_session_keeps_rendering(tiny_disk):
    # 32x32 colour + final in float16: 12 KiB a frame; 256 KiB of disk hold about 20
    with spawn_daemon("passthrough", runtime_dir="private", extra_args=["--recordings-dir", str(tiny_disk)]) as d:
        with Client(d.endpoint) as c:
            s = c.open_session(32, 32, {"color": "float16", "final": "float16"}, record="full", output_format="rgb16f")
            errors_at = []
            for t in range(80):
                color = np.full((32, 32, 3), t / 100, np.float16)
                r = s.render({"color": color, "final": color}, constants={"dt": [1 / 30]})
                np.testing.assert_array_equal(r.image, color)  # every frame renders, before and after the error
                if s.record_error is not None and not errors_at:
                    errors_at.append(t)
            assert errors_at, "the disk never filled"
            assert s.record_error.code == "record_failed" and "No space left" in s.record_error.message
            s.close()
            # the daemon is fine: a new session (not recorded) renders
            s2 = c.open_session(8, 8, {"color": "float16"})
            s2.render({"color": np.zeros((8, 8, 3), np.float16)})
    # what fitted is a readable dataset (or, when even the index did not fit, no index: never a torn one)
    if (tiny_disk / "full" / "index.json").exists():
        ds = SequenceDataset(tiny_disk / "full")
        assert 0 < ds.total_frames < 80
        c = ds.clip(0).engine["color"][:, 0, 0, 0].astype(np.float32)
        np.testing.assert_allclose(c, np.arange(len(c)) / 100, atol=1e-3)


BAD_RECORD = [
    ("../escape", "bad_field"), ("", "bad_field"), ("a/b", "bad_field"), (".hidden", "bad_field"),
    ("x" * 65, "bad_field"), ("with space", "bad_field"), ("trailing-newline\n", "bad_field"), ("nul\0", "bad_field"),
    ("..", "bad_field"), ("-dash-first", "bad_field"), ("ünïcode", "bad_field"), (123, "bad_field"),
    (True, "bad_field"), (["list"], "bad_field"),
]


@pytest.mark.parametrize("name,code", BAD_RECORD, ids=[repr(n)[:20] for n, _ in BAD_RECORD])
def test_bad_record_names_are_refused_at_open(tmp_path, name, code):
    import msgpack

    with inproc_daemon(recordings_dir=tmp_path) as (dmn, ctx):
        sock = ctx.socket(zmq.DEALER)
        sock.connect(dmn.endpoints[0])
        sock.send(msgpack.packb({"v": 1, "type": "open", "req": 1, "width": 8, "height": 8,
                                 "channels": {"color": "float16", "final": "float16"}, "action_dim": 9,
                                 "output_format": "rgb8", "transport": "inline", "record": name}))
        assert sock.poll(5000)
        reply = msgpack.unpackb(sock.recv(), raw=False)
        sock.close(0)
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert list(tmp_path.iterdir()) == []  # nothing created outside or inside the root


def test_record_requests_the_daemon_cannot_take_are_refused(tmp_path):
    with inproc_daemon(recordings_dir=tmp_path) as (dmn, ctx):
        with Client(dmn.endpoints[0], context=ctx) as c:
            with pytest.raises(BridgeError, match="final") as e:  # no training target declared
                c.open_session(8, 8, {"color": "float16"}, record="nofinal")
            assert e.value.code == "bad_field"
            with pytest.raises(BridgeError, match="cannot be") as e:  # final in a dtype it cannot have
                c.open_session(8, 8, {"color": "float16", "final": "int8"}, record="x")
            s = c.open_session(8, 8, {"color": "float16", "final": "float16"}, record="look", transport="inline")
            s.render({"color": np.zeros((8, 8, 3), np.float16), "final": np.zeros((8, 8, 3), np.float16)})
            s.close()
            wait_index(tmp_path / "look", 1)
            with pytest.raises(BridgeError, match="holds 8x8 frames, this session is 16x8"):  # another resolution into the same look
                c.open_session(16, 8, {"color": "float16", "final": "float16"}, record="look")
            with pytest.raises(BridgeError, match="holds channels"):  # another channel set
                c.open_session(8, 8, {"depth": "float32", "final": "float16"}, record="look")
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "index.json").write_text("{not json")
    with inproc_daemon(recordings_dir=tmp_path) as (dmn, ctx):
        with Client(dmn.endpoints[0], context=ctx) as c:
            with pytest.raises(BridgeError, match="not valid JSON"):  # a directory that is no recording
                c.open_session(8, 8, {"color": "float16", "final": "float16"}, record="world")
    with inproc_daemon(recordings_dir=None) as (dmn, ctx):
        with Client(dmn.endpoints[0], context=ctx) as c:
            with pytest.raises(BridgeError, match="does not record"):  # serve --no-record
                c.open_session(8, 8, {"color": "float16", "final": "float16"}, record="look")
    with pytest.raises(DatasetError):
        SequenceDataset(tmp_path / "world")


@pytest.mark.parametrize("pool", [[], ["--workers", "1"]], ids=["render-thread", "worker-pool"])
def test_the_renderer_never_sees_final(tmp_path, pool):
    """The session is recorded in the daemon and rendered on its render thread or in a worker process
    (serve --workers); neither renderer gets `final` (passthrough with no colour or G-buffer would shade
    the first channel it gets), shm and inline alike."""
    rec = tmp_path / "recordings"
    with spawn_daemon("passthrough", runtime_dir="private", extra_args=[*pool, "--recordings-dir", str(rec)],
                      timeout=120) as d:
        with Client(d.endpoint) as c:
            for transport in ("shm", "inline"):
                # final declared first: passthrough with no colour or G-buffer shades the first channel it gets
                s = c.open_session(8, 8, {"final": "float16", "material_id": "uint8"}, transport=transport,
                                   record="pooled", output_format="rgb16f")
                ids = np.full((8, 8, 1), 3, np.uint8)
                for t in range(3):
                    r = s.render({"material_id": ids, "final": np.full((8, 8, 3), t / 4, np.float16)}).image.copy()
                    other = s.render({"material_id": ids, "final": np.ones((8, 8, 3), np.float16)}).image
                    np.testing.assert_array_equal(r, other)  # the output ignores the target
                s.close()
    index = wait_index(rec / "pooled", 2)
    ds = SequenceDataset(rec / "pooled")
    assert [q.frames for q in ds.sequences] == [6, 6]
    np.testing.assert_array_equal(ds.clip(1).engine["final"][::2, 0, 0, 0], np.float16([0, 0.25, 0.5]))
    assert index["channels"] == ["material_id", "final"]
