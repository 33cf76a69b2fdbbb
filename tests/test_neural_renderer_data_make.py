"""`neurender dataset make` with the real world renderer (moderngl on llvmpipe): what the reader maps
equals what render_sequence produced, worker processes write the same bytes, and the report exists."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bridge.channels import CHANNELS
from demos.sequence import render_sequence
from neural_renderer.data import SequenceDataset
from neural_renderer.data.format import CHANNEL_DTYPES, flatten_constants
from neural_renderer.data.make import make_dataset

W, H, FRAMES, STYLES = 32, 24, 5, ("sunny", "night")


@pytest.fixture(scope="module")
def cli_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "d"
    r = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "dataset", "make", "--out", str(out),
                        "--sequences", "2", "--frames", str(FRAMES), "--resolution", f"{W}x{H}",
                        "--styles", *STYLES, "--seed-offset", "7"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "100%" in r.stderr  # the tqdm bar ran to the end
    return out


def test_round_trip_equals_what_was_rendered(cli_dataset):
    ds = SequenceDataset(cli_dataset)
    assert [s.seed for s in ds.sequences] == [7, 8] and list(ds.styles) == list(STYLES)
    for k, seed in enumerate((7, 8)):
        clip = ds.clip(k)
        for t, f in enumerate(render_sequence(seed, FRAMES, W, H, styles=STYLES)):
            for c in CHANNELS:
                want = np.asarray(f.engine[c]).reshape(H, W, -1).astype(CHANNEL_DTYPES[c])
                np.testing.assert_array_equal(clip.engine[c][t], want, err_msg=f"seed {seed} frame {t} {c}")
            for s in STYLES:
                np.testing.assert_array_equal(clip.reference[s][t], f.reference[s].astype(np.float16))
            np.testing.assert_array_equal(clip.action[t], f.action)
            np.testing.assert_array_equal(clip.constants[t], flatten_constants(f.constants))
            assert bool(clip.reset[t]) == f.reset
    assert ds.clip(0).reset[0] == 1  # frame 0 of every sequence is a reset


def test_report_written(cli_dataset):
    stats = json.loads((cli_dataset / "report" / "stats.json").read_text())
    assert stats["frames"] == 2 * FRAMES and stats["split"] == "train" and stats["frames_per_second"] > 0
    assert stats["bytes_on_disk"] > 0 and stats["resets"] >= 2
    assert (cli_dataset / "report" / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG"


def test_workers_write_the_same_bytes(cli_dataset, tmp_path):
    make_dataset(tmp_path / "w2", sequences=2, frames=FRAMES, width=W, height=H,
                 styles={s: "" for s in STYLES}, seed_offset=7, workers=2, progress=False, report=False)
    a, b = SequenceDataset(cli_dataset), SequenceDataset(tmp_path / "w2")
    for k in range(2):
        ca, cb = a.clip(k), b.clip(k)
        for c in CHANNELS:
            np.testing.assert_array_equal(ca.engine[c], cb.engine[c])
        for s in STYLES:
            np.testing.assert_array_equal(ca.reference[s], cb.reference[s])
