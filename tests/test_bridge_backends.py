"""Backends are found through the `neurender.backends` entry-point group, the way a third party's
would be: a package on the path with a dist-info naming a factory is served by a real daemon."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np

from bridge.backends import discover_backends
from bridge.client import Client
from bridge.daemon import spawn_daemon

REPO = Path(__file__).resolve().parents[1]

THIRD_PARTY = textwrap.dedent('''
    import numpy as np

    from bridge.backends import Renderer, RendererSession


    class HalfSession(RendererSession):
        def render(self, frame, out):
            out[..., :3] = frame.pixels["color"][..., :3] // 2
            if out.shape[-1] == 4:
                out[..., 3] = 255


    class HalfRenderer(Renderer):
        def describe(self):
            return {"backend": "half", "model": None, "steps": 0, "device": "cpu"}

        def open_session(self, spec):
            return HalfSession()


    def create(arg=None, **options):
        return HalfRenderer()
''')


def _install_third_party(site: Path) -> None:
    site.mkdir()
    (site / "nr_half_backend.py").write_text(THIRD_PARTY)
    dist = site / "nr_half_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nr-half-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[neurender.backends]\nhalf = nr_half_backend:create\n")


def test_project_backends_come_from_the_entry_point_group():
    found = discover_backends()
    assert found["passthrough"] == "bridge.backends.passthrough:create"
    assert found["generator"].endswith(":GeneratorRenderer")


def test_third_party_backend_is_discovered_and_served_by_a_daemon(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install_third_party(site)
    monkeypatch.syspath_prepend(str(site))
    assert discover_backends()["half"] == "nr_half_backend:create"

    color = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3  # 0, 3, ..., 213
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    with spawn_daemon("half", runtime_dir="private", env=env) as d, Client(d.endpoint) as c:
        s = c.open_session(6, 4, {"color": "uint8"}, output_format="rgb8")
        for k in range(s.slots):
            s.input_views(k)["color"][...] = color
        r = s.render(slot=s.acquire_slot(), timeout=30)
        image = np.asarray(r.image)
    assert image.shape == (4, 6, 3)
    assert image[0, 0].tolist() == [0, 1, 3]  # 0 // 2, 3 // 2, 6 // 2
    assert image[3, 5].tolist() == [103, 105, 106]  # 207 // 2, 210 // 2, 213 // 2
