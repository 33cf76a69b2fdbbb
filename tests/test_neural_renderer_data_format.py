"""Dataset format without OpenGL: round trip through the writer and the memory-mapped reader, seed
refusal, and the errors bad directories give."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bridge.channels import CHANNELS
from neural_renderer.data import DatasetError, EvalSeedError, SequenceDataset, SequencePlan
from neural_renderer.data.format import CHANNEL_DTYPES, flatten_constants
from neural_renderer.data.writer import FrameSink, allocate, commit, plan_index
from _eval_fake_frames import fake_frame

STYLES = {"sunny": "a sunny day", "night": "a night"}


def _write(root, plan, split="train", frames_per_shard=2048, w=12, h=8):
    index = plan_index(plan, width=w, height=h, styles=STYLES, split=split, frames_per_shard=frames_per_shard)
    allocate(root, index)
    sink = FrameSink(root, index)
    frames = {}
    for i, p in enumerate(plan):
        for t in range(p.frames):
            f = fake_frame(p.seed, t, w, h, STYLES)
            sink.write(i, t, f)
            frames[(i, t)] = f
    sink.close()
    commit(root, index)
    return frames


def test_round_trip_memory_mapped_equals_written(tmp_path):
    plan = [SequencePlan(3, 5), SequencePlan(4, 7), SequencePlan(999, 4)]
    frames = _write(tmp_path / "ds", plan, frames_per_shard=10)  # forces 3 shards: 5 | 7 | 4
    ds = SequenceDataset(tmp_path / "ds")
    assert len(ds) == 3 and ds.total_frames == 16 and len(ds.index["shards"]) == 3
    assert [s.seed for s in ds.sequences] == [3, 4, 999]
    assert ds.styles == STYLES and (ds.width, ds.height) == (12, 8)
    clip = ds.clip(1, 2, 4)
    for c in CHANNELS:
        assert isinstance(clip.engine[c].base, np.memmap) or isinstance(clip.engine[c], np.memmap)
        assert clip.engine[c].dtype == np.dtype(CHANNEL_DTYPES[c])
        want = np.stack([frames[(1, t)].engine[c] for t in range(2, 6)]).astype(CHANNEL_DTYPES[c])
        np.testing.assert_array_equal(clip.engine[c], want)
    for s in STYLES:
        want = np.stack([frames[(1, t)].reference[s] for t in range(2, 6)]).astype(np.float16)
        np.testing.assert_array_equal(clip.reference[s], want)
    np.testing.assert_array_equal(clip.action, np.stack([frames[(1, t)].action for t in range(2, 6)]))
    np.testing.assert_array_equal(clip.reset, [t % 5 == 0 for t in range(2, 6)])
    np.testing.assert_array_equal(clip.constants[1], flatten_constants(frames[(1, 3)].constants))
    np.testing.assert_array_equal(clip.constants_at(1)["world_to_view"], frames[(1, 3)].constants["world_to_view"])
    assert not clip.engine["color"].flags.writeable  # read-only maps: training cannot corrupt the data
    with pytest.raises(IndexError):
        ds.clip(1, 5, 4)
    with pytest.raises(KeyError):
        ds.clip(0, 0, 2, styles=["cartoon"])


def test_random_clips_are_valid_deterministic_and_cover_sequences(tmp_path):
    _write(tmp_path / "ds", [SequencePlan(1, 6), SequencePlan(2, 3), SequencePlan(5, 9)])
    ds = SequenceDataset(tmp_path / "ds")
    clips = list(ds.random_clips(4, seed=7, count=200, channels=["color"], styles=["night"]))
    again = [(c.seq_idx, c.start) for c in ds.random_clips(4, seed=7, count=200)]
    assert [(c.seq_idx, c.start) for c in clips] == again
    seen = {(c.seq_idx, c.start) for c in clips}
    # Sequence 1 has 3 frames: never long enough. The others: every start in range, nothing beyond.
    assert seen == {(0, s) for s in range(3)} | {(2, s) for s in range(6)}
    assert all(len(c) == 4 and set(c.engine) == {"color"} and set(c.reference) == {"night"} for c in clips)
    with pytest.raises(ValueError, match="no sequence has 10 frames"):
        next(ds.random_clips(10))


def test_training_path_refuses_eval_seeds_before_writing(tmp_path):
    for seed in (1_000_000, 1_234_567):
        with pytest.raises(EvalSeedError, match="evaluation seed"):
            plan_index([SequencePlan(0, 2), SequencePlan(seed, 2)], width=8, height=8, styles=STYLES, split="train")
    with pytest.raises(EvalSeedError, match="not a training seed"):
        plan_index([SequencePlan(1000, 2)], width=8, height=8, styles=STYLES, split="train")
    with pytest.raises(EvalSeedError, match="not an evaluation seed"):
        plan_index([SequencePlan(5, 2)], width=8, height=8, styles=STYLES, split="eval")
    # Through make_dataset and the CLI: refused before a single file exists.
    from neural_renderer.data.make import make_dataset

    with pytest.raises(EvalSeedError):
        make_dataset(tmp_path / "a", sequences=2, frames=2, width=8, height=8, styles=STYLES, seed_offset=999_999)
    assert not (tmp_path / "a").exists()
    r = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "dataset", "make", "--out", str(tmp_path / "b"),
                        "--sequences", "1", "--frames", "2", "--resolution", "8x8", "--seed-offset", "1000000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "evaluation seed" in r.stderr
    assert not (tmp_path / "b").exists()


def test_split_guard_on_read(tmp_path):
    _write(tmp_path / "ev", [SequencePlan(1_000_003, 3)], split="eval")
    with pytest.raises(DatasetError, match="'eval' dataset, expected 'train'"):
        SequenceDataset(tmp_path / "ev")
    assert SequenceDataset(tmp_path / "ev", split="eval").sequences[0].seed == 1_000_003


def test_allocate_refuses_a_dataset_larger_than_the_free_disk(tmp_path):
    from neural_renderer.data.writer import dataset_bytes

    huge = plan_index([SequencePlan(1, 10**6)], width=4096, height=4096, styles=STYLES, split="train",
                      frames_per_shard=10**6)
    assert dataset_bytes(huge) > 10**14  # hundreds of TB: more than any test machine has
    with pytest.raises(OSError, match="GiB are free"):
        allocate(tmp_path / "big", huge)
    assert not any((tmp_path / "big").iterdir())
    small = plan_index([SequencePlan(1, 2)], width=12, height=8, styles=STYLES, split="train")
    # 7 channels (33 B/px) + 2 styles (6 B/px each) per pixel, action 36 B, constants 332 B, reset 1 B per frame
    assert dataset_bytes(small) == 2 * (12 * 8 * (33 + 12) + 36 + 332 + 1)


def test_writer_rejects_bad_frames_and_existing_dirs(tmp_path):
    index = plan_index([SequencePlan(1, 2)], width=12, height=8, styles=STYLES, split="train")
    allocate(tmp_path / "ds", index)
    with pytest.raises(FileExistsError):
        allocate(tmp_path / "ds", index)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a dataset directory"):
        allocate(tmp_path / "other", index, overwrite=True)
    assert (tmp_path / "other" / "precious.txt").exists()
    sink = FrameSink(tmp_path / "ds", index)
    f = fake_frame(1, 0, 12, 8, STYLES)
    f.engine["color"] = f.engine["color"][:, :-1]
    with pytest.raises(ValueError, match=r"color: expected shape \(8, 12, 3\)"):
        sink.write(0, 0, f)
    f = fake_frame(1, 0, 12, 8, ["sunny"])
    with pytest.raises(ValueError, match="lacks the reference look 'night'"):
        sink.write(0, 0, f)
    f = fake_frame(1, 0, 12, 8, STYLES)
    del f.constants["dt"]
    with pytest.raises(ValueError, match="lack 'dt'"):
        sink.write(0, 0, f)
    with pytest.raises(IndexError):
        sink.write(0, 2, fake_frame(1, 2, 12, 8, STYLES))
    with pytest.raises(ValueError, match="style name"):
        plan_index([SequencePlan(1, 2)], width=8, height=8, styles={"../x": "p"}, split="train")


def _corrupt(root, how):
    idx_path = root / "index.json"
    index = json.loads(idx_path.read_text())
    if how == "no index":
        idx_path.unlink()
    elif how == "bad json":
        idx_path.write_text("{not json")
    elif how == "wrong format":
        index["format"] = "something-else"
    elif how == "future version":
        index["version"] = 99
    elif how == "missing field":
        del index["width"]
    elif how == "action layout":
        index["action_layout"] = ["forward"]
    elif how == "array dtype in index":
        index["arrays"]["color"]["dtype"] = "float64"
    elif how == "sequence out of shard":
        index["sequences"][0]["frames"] = 100
    elif how == "missing shard dir":
        (root / "shard_00000" / "color.npy").unlink()
        for f in (root / "shard_00000").iterdir():
            f.unlink()
        (root / "shard_00000").rmdir()
    elif how == "missing array":
        (root / "shard_00000" / "motion.npy").unlink()
    elif how == "truncated array":
        p = root / "shard_00000" / "color.npy"
        p.write_bytes(p.read_bytes()[:-100])
    elif how == "wrong dtype":
        np.save(root / "shard_00000" / "depth.npy", np.zeros((3, 8, 12, 1), np.float64))
    if how in ("wrong format", "future version", "missing field", "action layout", "sequence out of shard",
               "array dtype in index"):
        idx_path.write_text(json.dumps(index))


@pytest.mark.parametrize("how,message", [
    ("no index", "no index.json"),
    ("bad json", "not valid JSON"),
    ("wrong format", "not a neurender-dataset index"),
    ("future version", "format version 99"),
    ("missing field", "'width' missing"),
    ("action layout", "action layout"),
    ("sequence out of shard", "fall outside shard 0"),
    ("array dtype in index", "do not match format 1"),
    ("missing shard dir", "shard 0 directory 'shard_00000' is missing"),
    ("missing array", "motion.npy: missing"),
    ("truncated array", "color.npy: unreadable"),
    ("wrong dtype", "depth.npy: holds float64"),
])
def test_bad_dataset_dirs_give_clear_errors(tmp_path, how, message):
    root = tmp_path / "ds"
    _write(root, [SequencePlan(1, 3)])
    _corrupt(root, how)
    with pytest.raises(DatasetError, match=message):
        SequenceDataset(root)


def test_missing_and_non_directories(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset directory"):
        SequenceDataset(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        SequenceDataset(tmp_path / "file")
    # Allocated but never committed (a crashed writer): refused, not half-read.
    allocate(tmp_path / "half", plan_index([SequencePlan(1, 2)], width=8, height=8, styles=STYLES, split="train"))
    with pytest.raises(DatasetError, match="did not finish"):
        SequenceDataset(tmp_path / "half")


def test_docs_describe_the_bytes_on_disk(tmp_path):
    """docs/dataset.md's table and byte layout, checked against files the writer produced, read raw."""
    import re
    import struct
    from pathlib import Path

    from bridge.channels import CONSTANTS_LAYOUT

    frames = _write(tmp_path / "ds", [SequencePlan(2, 3), SequencePlan(3, 2)])
    doc = (Path(__file__).parent.parent / "docs" / "dataset.md").read_text()
    rows = dict(re.findall(r"^\| `([\w<>]+)\.npy` \| (\w+) \(", doc, re.M))
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    for name, spec in index["arrays"].items():
        documented = rows["ref_<style>" if name.startswith("ref_") else name]
        assert documented == spec["dtype"], name
        raw = (tmp_path / "ds" / "shard_00000" / f"{name}.npy").read_bytes()
        assert raw[:8] == b"\x93NUMPY\x01\x00"
        hlen = struct.unpack("<H", raw[8:10])[0]
        assert (10 + hlen) % 64 == 0 and raw[10 + hlen - 1:10 + hlen] == b"\n"
        dt = np.dtype(spec["dtype"]).newbyteorder("<")
        per = int(np.prod(spec["shape"], dtype=np.int64)) * dt.itemsize
        f = 3 + 1  # row 4 = frame 1 of the second sequence
        row = np.frombuffer(raw, dt, count=per // dt.itemsize, offset=10 + hlen + f * per).reshape(spec["shape"])
        src = frames[(1, 1)]
        want = {"action": src.action, "reset": np.uint8(src.reset), "constants": flatten_constants(src.constants)}.get(
            name, src.engine.get(name) if not name.startswith("ref_") else src.reference.get(name[4:]))
        np.testing.assert_array_equal(row, np.asarray(want).astype(dt).reshape(spec["shape"]))
    # the constants column table
    cols = dict(re.findall(r"`(\w+)` (\d+)(?:-\d+)?", doc.split("`constants.npy` columns")[1].split("###")[0]))
    start = 0
    for name, n in CONSTANTS_LAYOUT.items():
        assert int(cols[name]) == start, name
        start += n


@pytest.mark.parametrize("argv,message", [
    (["--seed-offset", "1000000"], "evaluation seed"),
    (["--seed-offset", "999"], "not a training seed"),  # 999 is, 1000 (its neighbour) is not
    (["--styles", "sunny", "vaporwave"], "unknown style(s) ['vaporwave']"),
    (["--resolution", "128"], "resolution must look like 128x128"),
    (["--resolution", "0x64"], "resolution must be positive"),
    (["--frames", "0"], "must be positive"),
    (["--out-exists"], "exists and is not empty"),
])
def test_dataset_make_cli_refuses_bad_arguments_before_rendering(tmp_path, argv, message):
    out = tmp_path / "out"
    if argv == ["--out-exists"]:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        argv = []
    base = ["--out", str(out), "--sequences", "2", "--frames", "2", "--resolution", "8x8"]
    r = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "dataset", "make", *base, *argv],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() or [p.name for p in out.iterdir()] == ["keep.txt"]
