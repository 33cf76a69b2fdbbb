"""A client process the tests kill: opens a session, announces it on stdout, then streams frames
(pipelined, so a frame is in flight when the kill lands) until it is killed."""
from __future__ import annotations

import json
import sys

import numpy as np

from bridge.client import Client


def main(endpoint: str, transport: str) -> None:
    c = Client(endpoint)
    s = c.open_session(32, 16, {"color": "float16"}, transport=transport)
    print(json.dumps({"session": s.id, **s.info["layout"]}), flush=True)
    color = np.full((16, 32, 3), 0.5, np.float16)
    while True:
        s.submit({"color": color})
        s.poll(timeout=0.01)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
