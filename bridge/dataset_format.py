"""The on-disk dataset format (version 1): what every file holds, the index, and the checks that open it.

docs/dataset.md is the prose version of this module; the two must agree. It lives in the bridge because
the daemon writes recordings in this format and the bridge imports nothing else of ours;
neural_renderer.data (the renderer of world datasets, the reader training uses) imports it from here.

    DIR/index.json                 the index (UTF-8 JSON, written last: a dir without it is incomplete)
    DIR/shard_00000/<array>.npy    one NumPy .npy (format 1.0) file per array, C order, little endian
    DIR/report/                    contact_sheet.png + stats.json (for people; the reader ignores it)

Every array in a shard has the frame axis first; the sequences of a shard are stored back to back
along it (sequence k of a shard occupies rows [start, start + frames) as the index says).
"""
from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.channels import ACTION_DIM, ACTION_LAYOUT, CHANNELS, CONSTANTS_LAYOUT, DECLARABLE_CHANNELS

FORMAT_NAME = "neurender-dataset"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SPLITS = ("train", "eval")

# Storage dtype per engine channel. Images are float16 (half the bytes, ample for [0, 1] colour);
# depth and motion stay float32 because the warping-error metric samples at motion-vector
# positions and float16 loses 1/32 px at 64 px of motion; ids and masks are integers.
CHANNEL_DTYPES: dict[str, str] = {
    "color": "float16",
    "depth": "float32",
    "normals": "float16",
    "motion": "float32",
    "albedo": "float16",
    "material_id": "uint16",
    "disocclusion": "uint8",
    "final": "float16",  # a recording's training target (the game's own frame), like color
}
assert set(CHANNEL_DTYPES) == set(DECLARABLE_CHANNELS), "every declarable channel needs a storage dtype"
REFERENCE_DTYPE = "float16"
CONSTANTS_DIM = sum(CONSTANTS_LAYOUT.values())
# Per-frame arrays that are not images: name -> (dtype, trailing shape).
FRAME_ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "action": ("float32", (ACTION_DIM,)),
    "constants": ("float32", (CONSTANTS_DIM,)),
    "reset": ("uint8", ()),
}
STYLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class DatasetError(ValueError):
    """A directory that is not a readable dataset of this format (missing, incomplete, corrupt)."""


class EvalSeedError(ValueError):
    """A seed written to the wrong split: evaluation seeds never enter training data."""


def shard_dir_name(i: int) -> str:
    return f"shard_{i:05d}"


def reference_array(style: str) -> str:
    return f"ref_{style}"


def check_style_name(style: str) -> str:
    if not STYLE_NAME.match(style):
        raise ValueError(f"style name {style!r} must match {STYLE_NAME.pattern} (it becomes a file name)")
    return style


def array_specs(width: int, height: int, styles: list[str],
                channels: list[str] | None = None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every array of a shard: file stem -> (dtype, shape after the frame axis). `channels`: the
    channels stored (default every engine channel; a recording stores what its session declared)."""
    names = list(CHANNELS) if channels is None else list(channels)
    for name in names:
        if name not in DECLARABLE_CHANNELS:
            raise ValueError(f"unknown channel {name!r}")
    specs: dict[str, tuple[str, tuple[int, ...]]] = {
        name: (CHANNEL_DTYPES[name], (height, width, DECLARABLE_CHANNELS[name].components)) for name in names
    }
    for s in styles:
        specs[reference_array(s)] = (REFERENCE_DTYPE, (height, width, 3))
    specs.update(FRAME_ARRAYS)
    return specs


def flatten_constants(constants: dict) -> np.ndarray:
    """Per-frame constants dict -> (CONSTANTS_DIM,) float32 in CONSTANTS_LAYOUT order."""
    out = np.empty(CONSTANTS_DIM, np.float32)
    i = 0
    for name, n in CONSTANTS_LAYOUT.items():
        if name not in constants:
            raise ValueError(f"frame constants lack {name!r}")
        v = np.asarray(constants[name], np.float32).reshape(-1)
        if v.size != n:
            raise ValueError(f"constant {name!r} has {v.size} values, expected {n}")
        out[i:i + n] = v
        i += n
    return out


def unflatten_constants(row: np.ndarray) -> dict[str, np.ndarray]:
    """(..., CONSTANTS_DIM) -> name -> (..., n), matrices (..., 4, 4): one frame's row or a clip's rows."""
    out, i = {}, 0
    for name, n in CONSTANTS_LAYOUT.items():
        v = np.asarray(row[..., i:i + n], np.float32)
        out[name] = v.reshape(*v.shape[:-1], 4, 4) if n == 16 else v
        i += n
    return out


@dataclass(frozen=True)
class SequenceInfo:
    seed: int
    frames: int
    shard: int
    start: int  # first row of this sequence in its shard's arrays
    script: str
    fps: float


def read_index(root: Path) -> dict:
    """Load and check index.json; raises DatasetError naming what is wrong."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such dataset directory")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    path = root / INDEX_FILE
    if not path.is_file():
        raise DatasetError(f"{root}: no {INDEX_FILE} (not a neurender dataset, or its writer did not finish)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: not a {FORMAT_NAME} index")
    if index.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: format version {index.get('version')!r}, this reader reads {FORMAT_VERSION}")
    for key, kind in (("split", str), ("width", int), ("height", int), ("styles", list),
                      ("shards", list), ("sequences", list), ("action_layout", list)):
        if not isinstance(index.get(key), kind):
            raise DatasetError(f"{path}: field {key!r} missing or not a {kind.__name__}")
    if not isinstance(index.get("arrays"), dict) or not isinstance(index.get("channels"), list):
        raise DatasetError(f"{path}: field 'arrays' or 'channels' missing")
    try:
        styles = [check_style_name(st["name"]) for st in index["styles"]]
        want = array_specs(int(index["width"]), int(index["height"]), styles, list(index["channels"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: malformed styles ({e!r})") from None
    got = {k: (v.get("dtype"), tuple(v.get("shape", ()))) for k, v in index["arrays"].items() if isinstance(v, dict)}
    if got != want:
        raise DatasetError(f"{path}: arrays {sorted(got)} do not match format {FORMAT_VERSION} for these "
                           f"styles and resolution (expected {sorted(want)} with their dtypes and shapes)")
    if index["split"] not in SPLITS:
        raise DatasetError(f"{path}: split {index['split']!r} is not one of {SPLITS}")
    if tuple(index["action_layout"]) != ACTION_LAYOUT:
        raise DatasetError(f"{path}: action layout {index['action_layout']} differs from bridge.channels")
    if [list(x) for x in index.get("constants_layout", [])] != [[k, v] for k, v in CONSTANTS_LAYOUT.items()]:
        raise DatasetError(f"{path}: constants layout differs from bridge.channels")
    return index


def parse_sequences(index: dict, path: Path) -> list[SequenceInfo]:
    seqs = []
    n_shards = len(index["shards"])
    for k, s in enumerate(index["sequences"]):
        try:
            info = SequenceInfo(int(s["seed"]), int(s["frames"]), int(s["shard"]), int(s["start"]),
                                str(s.get("script", "")), float(s.get("fps", 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{path}: sequence {k} is malformed ({e!r})") from None
        if not 0 <= info.shard < n_shards:
            raise DatasetError(f"{path}: sequence {k} names shard {info.shard}, there are {n_shards}")
        rows = int(index["shards"][info.shard]["frames"])
        if info.frames <= 0 or info.start < 0 or info.start + info.frames > rows:
            raise DatasetError(f"{path}: sequence {k} rows [{info.start}, {info.start + info.frames}) "
                               f"fall outside shard {info.shard} ({rows} rows)")
        seqs.append(info)
    return seqs


def make_index(*, width: int, height: int, styles: dict[str, str], split: str, shards: list[dict],
               sequences: list[dict], channels: list[str] | None = None, meta: dict | None = None,
               look: dict | None = None) -> dict:
    """The index.json document. `look` ({"name", "prompt"}) marks a recording: its target is `final`."""
    specs = array_specs(width, height, list(styles), channels)
    index = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "split": split,
        "width": width,
        "height": height,
        "styles": [{"name": n, "prompt": pr, "array": reference_array(n)} for n, pr in styles.items()],
        "arrays": {name: {"dtype": dt, "shape": list(shape)} for name, (dt, shape) in specs.items()},
        "channels": list(CHANNELS) if channels is None else list(channels),
        "action_layout": list(ACTION_LAYOUT),
        "constants_layout": [[k, v] for k, v in CONSTANTS_LAYOUT.items()],
        "shards": shards,
        "sequences": sequences,
        "meta": dict(meta or {}),
    }
    if look is not None:
        index["look"] = dict(look)
    return index


def commit(root: Path, index: dict) -> Path:
    """Write index.json atomically (temp file + rename): the dataset exists from this moment."""
    root = Path(root)
    tmp = root / (INDEX_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / INDEX_FILE)
    return root / INDEX_FILE


# -- .npy files written a frame at a time (the recorder: the frame count is known only at the end) --
NPY_HEADER_BYTES = 128  # 10 + HLEN; every file we write has this header size (docs/dataset.md)
NPY_MAGIC = b"\x93NUMPY\x01\x00"


def npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """A format-1.0 header of exactly NPY_HEADER_BYTES, so it can be rewritten in place with the final
    frame count once a streamed file is complete."""
    d = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (d.str, tuple(int(x) for x in shape))
    pad = NPY_HEADER_BYTES - len(NPY_MAGIC) - 2 - len(text) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} does not fit a {NPY_HEADER_BYTES}-byte .npy header")
    hlen = NPY_HEADER_BYTES - len(NPY_MAGIC) - 2
    return NPY_MAGIC + hlen.to_bytes(2, "little") + (text + " " * pad + "\n").encode("latin1")


def read_npy_header(head: bytes) -> tuple[str, tuple[int, ...]]:
    """(descr, shape) of a header written by npy_header (used by tests and readers without NumPy)."""
    if head[:8] != NPY_MAGIC:
        raise ValueError("not a .npy 1.0 file")
    hlen = int.from_bytes(head[8:10], "little")
    d = ast.literal_eval(head[10:10 + hlen].decode("latin1"))
    return d["descr"], tuple(d["shape"])
