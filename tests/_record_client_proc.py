"""A recording client process the tests SIGKILL: opens a session recorded as look NAME, announces it on
stdout, then streams frames (pipelined) until it is killed; every frame's colour is its seq / 1000."""
from __future__ import annotations

import json
import sys

import numpy as np

from bridge.client import Client


def main(endpoint: str, name: str) -> None:
    c = Client(endpoint)
    s = c.open_session(16, 16, {"color": "float16", "final": "float16"}, record=name)
    print(json.dumps({"session": s.id, "record": s.record}), flush=True)
    k = 0
    while True:
        v = np.float16(k / 1000)
        s.submit({"color": np.full((16, 16, 3), v, np.float16), "final": np.full((16, 16, 3), 1 - v, np.float16)})
        s.poll(timeout=0.01)
        k += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
