"""A procedural town generated from a seed: streets, buildings, rooms, colonnades with stairs and ramps,
parks with trees, props, street lamps, boundary walls, and a few dynamic objects that move on their own.

Everything is a pure function of the seed (numpy Generator seeded with it), and dynamic objects are
pure functions of time, so any frame can be re-rendered exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demos import geometry
from demos.materials import MATERIAL_ID as M

MAX_DYNAMIC = 15  # dynamic objects are indices 1..15 of the shaders' model-matrix arrays


@dataclass(frozen=True)
class DynamicObject:
    kind: str  # "car" (drives back and forth along a street), "ball" (bounces), "spinner" (rotating crate)
    mesh: np.ndarray  # (V, 8) vertices in object space, object index already set
    origin: tuple[float, float, float]
    axis: tuple[float, float, float]  # direction of travel (car) or of drift (ball)
    amplitude: float
    period: float
    phase: float

    def model(self, t: float) -> np.ndarray:
        """Object-to-world matrix at time t (seconds)."""
        o, a = np.asarray(self.origin), np.asarray(self.axis)
        w = 2 * np.pi * t / self.period + self.phase
        m = np.eye(4)
        if self.kind == "car":
            m[:3, 3] = o + a * self.amplitude * np.sin(w)
            yaw = np.arctan2(a[0], a[2])
            m[:3, :3] = _rot_y(yaw)
        elif self.kind == "ball":
            m[:3, 3] = o + a * self.amplitude * np.sin(0.5 * w) + np.array([0.0, 2.5 * abs(np.sin(w)), 0.0])
        else:  # spinner
            m[:3, :3] = _rot_y(w)
            m[:3, 3] = o + np.array([0.0, 0.3 * (1 + np.sin(2 * w)), 0.0])
        return m


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


class _Builder:
    def __init__(self):
        self.ramp_mats: list[int] = []
        self.mins, self.maxs, self.mats = [], [], []
        self.solid: list[bool] = []
        self.sph_c, self.sph_r, self.sph_m = [], [], []
        self.ramps: list[tuple] = []  # (x0, z0, x1, z1, y0, y1), rising along +z

    def ramp(self, lo, hi, mat: str):
        self.ramps.append((lo[0], lo[2], hi[0], hi[2], lo[1], hi[1]))
        self.ramp_mats.append(M[mat])

    def box(self, lo, hi, mat: str | None, solid: bool = True):
        """mat None: a collision box only, never drawn."""
        self.mins.append(lo)
        self.maxs.append(hi)
        self.mats.append(-1 if mat is None else M[mat])
        self.solid.append(solid)

    def sphere(self, c, r, mat: str):
        self.sph_c.append(c)
        self.sph_r.append(r)
        self.sph_m.append(M[mat])
        self.box([c[0] - r, c[1] - r, c[2] - r], [c[0] + r, c[1] + r, c[2] + r], None)  # its collision box


class World:
    """The town. `blocks` x `blocks` city blocks of `block` metres with `street`-metre streets between."""

    def __init__(self, seed: int, blocks: int = 8, block: float = 28.0, street: float = 10.0):
        self.seed = int(seed)
        if self.seed < 0:
            raise ValueError(f"world seed must be >= 0, got {seed}")
        self.block, self.street, self.n = block, street, blocks
        self.size = blocks * block + (blocks + 1) * street
        rng = np.random.default_rng([self.seed, 17])
        b = _Builder()
        self.kinds: list[str] = []
        self.blocks: list[tuple[str, float, float]] = []  # (kind, x0, z0) of every city block
        lamps: list[tuple[float, float, float]] = []
        spawn: list[tuple[float, float]] = []
        dyn_specs: list[tuple] = []
        L = self.size
        b.box([-2, -1, -2], [L + 2, 0, L + 2], "asphalt")  # the ground
        for lo, hi in (([-2, 0, -2], [0, 12, L + 2]), ([L, 0, -2], [L + 2, 12, L + 2]),
                       ([0, 0, -2], [L, 12, 0]), ([0, 0, L], [L, 12, L + 2])):
            b.box(lo, hi, "brick")  # boundary walls
        pitch = block + street
        for k in range(blocks + 1):
            s = k * pitch + street / 2  # street centre line
            for j in range(blocks + 1):
                spawn.append((s, j * pitch + street / 2))
            for j in range(blocks):
                spawn.append((s, j * pitch + street + block / 2))
                spawn.append((j * pitch + street + block / 2, s))
        for i in range(blocks):
            for j in range(blocks):
                x0, z0 = street + i * pitch, street + j * pitch
                kind = rng.choice(["buildings", "buildings", "park", "plaza", "room"])
                self.kinds.append(str(kind))
                self.blocks.append((str(kind), x0, z0))
                b.box([x0, 0, z0], [x0 + block, 0.15, z0 + block], "concrete")  # sidewalk
                for cx, cz in ((x0 + 0.6, z0 + 0.6), (x0 + block - 0.6, z0 + 0.6),
                               (x0 + 0.6, z0 + block - 0.6), (x0 + block - 0.6, z0 + block - 0.6)):
                    b.box([cx - 0.1, 0.15, cz - 0.1], [cx + 0.1, 4.6, cz + 0.1], "metal")
                    b.box([cx - 0.3, 4.6, cz - 0.3], [cx + 0.3, 4.8, cz + 0.3], "lamp")
                    lamps.append((cx, 4.5, cz))
                getattr(self, f"_{kind}")(b, rng, x0, z0, dyn_specs)
        for _ in range(6):  # cars along random streets
            k = int(rng.integers(0, blocks + 1))
            along_x = bool(rng.integers(0, 2))
            s = k * pitch + street / 2 + (1.8 if rng.integers(0, 2) else -1.8)
            mid = float(rng.uniform(0.3, 0.7) * L)
            origin = (mid, 0.0, s) if along_x else (s, 0.0, mid)
            axis = (1.0, 0.0, 0.0) if along_x else (0.0, 0.0, 1.0)
            dyn_specs.append(("car", origin, axis, float(rng.uniform(15, 40)), float(rng.uniform(8, 16))))
        self.dynamic: list[DynamicObject] = []
        for idx, (kind, origin, axis, amp, period) in enumerate(dyn_specs[:MAX_DYNAMIC], start=1):
            mesh = self._dynamic_mesh(kind, idx, rng)
            self.dynamic.append(DynamicObject(kind, mesh, tuple(origin), tuple(axis), amp, period,
                                              float(rng.uniform(0, 2 * np.pi))))
        mins, maxs = np.array(b.mins, np.float64), np.array(b.maxs, np.float64)
        mats, solid = np.array(b.mats), np.array(b.solid)
        drawn = mats >= 0
        parts = [geometry.boxes(mins[drawn], maxs[drawn], mats[drawn])]
        if b.sph_c:
            parts.append(geometry.spheres(np.array(b.sph_c), np.array(b.sph_r), np.array(b.sph_m)))
        for (x0, z0, x1, z1, y0, y1), mat in zip(b.ramps, b.ramp_mats):
            parts.append(geometry.ramp((x0, y0, z0), (x1, y1, z1), mat))
        self.ramps = np.array(b.ramps, np.float64).reshape(-1, 6)
        self.static_mesh = np.concatenate(parts)
        self.solid_min, self.solid_max = mins[solid], maxs[solid]
        self.spawn_points = np.array(spawn, np.float64)
        self.lamp_positions = np.array(lamps, np.float32)  # (L, 3) light positions under the lamp heads

    # ---- block kinds -------------------------------------------------------------------------
    def _buildings(self, b, rng, x0, z0, dyn):
        bl = self.block
        split = rng.integers(1, 3, size=2)
        for a in range(split[0]):
            for c in range(split[1]):
                w, d = (bl - 4) / split[0], (bl - 4) / split[1]
                lx, lz = x0 + 2 + a * w, z0 + 2 + c * d
                h = float(rng.uniform(5, 26))
                inset = 0.4
                mat = str(rng.choice(["brick", "concrete", "plaster"]))
                b.box([lx + inset, 0.15, lz + inset], [lx + w - inset, h, lz + d - inset], mat)
                b.box([lx + inset - 0.3, h, lz + inset - 0.3], [lx + w - inset + 0.3, h + 0.4, lz + d - inset + 0.3], "roof")
                b.box([lx + w / 2 - 0.8, 0.15, lz + inset - 0.15], [lx + w / 2 + 0.8, 2.4, lz + inset], "wood", solid=False)

    def _park(self, b, rng, x0, z0, dyn):
        bl = self.block
        b.box([x0 + 1, 0.15, z0 + 1], [x0 + bl - 1, 0.3, z0 + bl - 1], "grass")
        for _ in range(int(rng.integers(4, 9))):
            tx, tz = x0 + rng.uniform(3, bl - 3), z0 + rng.uniform(3, bl - 3)
            th = float(rng.uniform(2.5, 4.0))
            b.box([tx - 0.25, 0.3, tz - 0.25], [tx + 0.25, 0.3 + th, tz + 0.25], "bark")
            b.sphere((tx, 0.3 + th + 1.2, tz), float(rng.uniform(1.6, 2.4)), "foliage")
        for _ in range(int(rng.integers(1, 4))):
            r = float(rng.uniform(0.4, 1.0))
            b.sphere((x0 + rng.uniform(3, bl - 3), 0.3 + r, z0 + rng.uniform(3, bl - 3)), r,
                     str(rng.choice(["marble", "metal"])))
        bx, bz = x0 + rng.uniform(4, bl - 6), z0 + rng.uniform(4, bl - 4)
        b.box([bx, 0.3, bz], [bx + 2.0, 0.75, bz + 0.6], "wood")  # bench
        if len(dyn) < 8:
            dyn.append(("ball", (x0 + bl / 2, 0.3, z0 + bl / 2), (1.0, 0.0, 0.0), float(rng.uniform(2, 6)),
                        float(rng.uniform(1.5, 3.0))))

    def _plaza(self, b, rng, x0, z0, dyn):
        bl = self.block
        b.box([x0 + 1, 0.15, z0 + 1], [x0 + bl - 1, 0.25, z0 + bl - 1], "marble")
        # colonnade: pillars carrying a roof slab
        cx0, cz0 = x0 + 3, z0 + 3
        for a in range(4):
            for c in range(2):
                px, pz = cx0 + a * 3.5, cz0 + c * 5
                b.box([px, 0.25, pz], [px + 0.8, 5.0, pz + 0.8], str(rng.choice(["concrete", "marble"])))
        b.box([cx0 - 0.5, 5.0, cz0 - 0.5], [cx0 + 3 * 3.5 + 1.3, 5.5, cz0 + 5 + 1.3], "concrete")
        # stairs up to a platform
        sx, sz = x0 + bl - 9, z0 + bl - 12
        steps = 8
        for s in range(steps):
            b.box([sx, 0.25, sz + s * 0.5], [sx + 4, 0.25 + (s + 1) * 0.25, sz + (s + 1) * 0.5], "concrete")
        b.box([sx - 1, 0.25, sz + steps * 0.5], [sx + 5, 0.25 + steps * 0.25, sz + steps * 0.5 + 5], "concrete")
        b.box([sx - 1, 2.25, sz + steps * 0.5 + 4.7], [sx + 5, 3.2, sz + steps * 0.5 + 5], "metal")  # railing
        # a ramp up to a deck in the opposite corner
        b.ramp([x0 + 1.5, 0.25, z0 + bl - 10], [x0 + 4.5, 1.45, z0 + bl - 4], "concrete")
        b.box([x0 + 1.5, 0.25, z0 + bl - 4], [x0 + 4.5, 1.45, z0 + bl - 1.5], "wood")
        for _ in range(int(rng.integers(3, 8))):  # crates, some stacked
            cx, cz = x0 + rng.uniform(6, bl - 12), z0 + rng.uniform(11, bl - 3)
            s = float(rng.uniform(0.7, 1.2))
            b.box([cx, 0.25, cz], [cx + s, 0.25 + s, cz + s], "wood")
            if rng.random() < 0.4:
                b.box([cx + 0.1, 0.25 + s, cz + 0.1], [cx + 0.1 + 0.7 * s, 0.25 + 1.7 * s, cz + 0.1 + 0.7 * s], "wood")
        if len(dyn) < 8:
            dyn.append(("spinner", (x0 + bl / 2, 0.25, z0 + bl - 5), (0.0, 0.0, 1.0), 0.0, float(rng.uniform(4, 9))))

    def _room(self, b, rng, x0, z0, dyn):
        bl, t, h, door = self.block, 0.3, 4.0, 2.5
        lo, hi = 3.0, bl - 3.0
        b.box([x0 + lo, 0.15, z0 + lo], [x0 + hi, 0.25, z0 + hi], "marble")
        mid = (lo + hi) / 2
        for side in range(4):
            for seg in ((lo, mid - door / 2), (mid + door / 2, hi)):
                if side < 2:  # walls along x at z = lo / hi
                    zz = lo if side == 0 else hi - t
                    b.box([x0 + seg[0], 0.25, z0 + zz], [x0 + seg[1], h, z0 + zz + t], "plaster")
                else:
                    xx = lo if side == 2 else hi - t
                    b.box([x0 + xx, 0.25, z0 + seg[0]], [x0 + xx + t, h, z0 + seg[1]], "plaster")
            if side < 2:
                zz = lo if side == 0 else hi - t
                b.box([x0 + mid - door / 2, 2.7, z0 + zz], [x0 + mid + door / 2, h, z0 + zz + t], "plaster", solid=False)
            else:
                xx = lo if side == 2 else hi - t
                b.box([x0 + xx, 2.7, z0 + mid - door / 2], [x0 + xx + t, h, z0 + mid + door / 2], "plaster", solid=False)
        if rng.random() < 0.5:
            b.box([x0 + lo - 0.3, h, z0 + lo - 0.3], [x0 + hi + 0.3, h + 0.3, z0 + hi + 0.3], "roof")
        for px, pz in ((lo + 5, lo + 5), (hi - 5.6, lo + 5), (lo + 5, hi - 5.6), (hi - 5.6, hi - 5.6)):
            b.box([x0 + px, 0.25, z0 + pz], [x0 + px + 0.6, h, z0 + pz + 0.6], "concrete")
        for _ in range(int(rng.integers(2, 6))):
            cx, cz = x0 + rng.uniform(lo + 1, hi - 2), z0 + rng.uniform(lo + 1, hi - 2)
            if abs(cx - x0 - mid) < 2 or abs(cz - z0 - mid) < 2:
                continue  # keep the paths between doors free
            s = float(rng.uniform(0.6, 1.0))
            b.box([cx, 0.25, cz], [cx + s, 0.25 + s, cz + s], "wood")
        b.sphere((x0 + mid + 3, 0.25 + 0.6, z0 + mid - 3), 0.6, "metal")

    @staticmethod
    def _dynamic_mesh(kind: str, idx: int, rng) -> np.ndarray:
        if kind == "car":
            body = geometry.boxes([[-0.9, 0.3, -2.0], [-0.8, 1.1, -0.9]], [[0.9, 1.1, 2.0], [0.8, 1.7, 1.0]],
                                  [M["painted"], M["metal"]], obj=idx)
            wheels = geometry.spheres([[-0.85, 0.35, -1.3], [0.85, 0.35, -1.3], [-0.85, 0.35, 1.3], [0.85, 0.35, 1.3]],
                                      [0.35] * 4, [M["asphalt"]] * 4, obj=idx)
            return np.concatenate([body, wheels])
        if kind == "ball":
            return geometry.spheres([[0.0, 0.7, 0.0]], [0.7], [M["painted"]], obj=idx)
        return geometry.boxes([[-0.6, 0.0, -0.6]], [[0.6, 1.2, 0.6]], [M["wood"]], obj=idx)

    # ---- queries -----------------------------------------------------------------------------
    def mesh(self) -> np.ndarray:
        """All vertices (static world, then every dynamic object in object space): (V, 8) float32."""
        return np.concatenate([self.static_mesh] + [d.mesh for d in self.dynamic]).astype(np.float32)

    def models(self, t: float) -> np.ndarray:
        """(MAX_DYNAMIC + 1, 4, 4) object-to-world matrices at time t; index 0 (static) is identity."""
        out = np.tile(np.eye(4), (MAX_DYNAMIC + 1, 1, 1))
        for i, d in enumerate(self.dynamic, start=1):
            out[i] = d.model(t)
        return out

    def _ramp_heights(self, x: float, z: float, r: float) -> np.ndarray:
        """Heights of the ramps whose footprint a disc of radius r at (x, z) touches (highest point under it)."""
        rp = self.ramps
        touch = (x + r > rp[:, 0]) & (x - r < rp[:, 2]) & (z + r > rp[:, 1]) & (z - r < rp[:, 3])
        rp = rp[touch]
        zz = np.clip(z + r, rp[:, 1], rp[:, 3])
        return rp[:, 4] + (rp[:, 5] - rp[:, 4]) * (zz - rp[:, 1]) / (rp[:, 3] - rp[:, 1])

    def blocked(self, x: float, z: float, feet: float, radius: float, step: float, height: float) -> bool:
        lo, hi = self.solid_min, self.solid_max
        inside = (x + radius > lo[:, 0]) & (x - radius < hi[:, 0]) & (z + radius > lo[:, 2]) & (z - radius < hi[:, 2])
        if np.any(inside & (hi[:, 1] > feet + step) & (lo[:, 1] < feet + height)):
            return True
        return bool(np.any(self._ramp_heights(x, z, radius) > feet + step))

    def ground(self, x: float, z: float, feet: float, radius: float, step: float) -> float:
        """Height of the highest walkable surface under a disc of `radius` at (x, z) reachable from `feet`."""
        lo, hi = self.solid_min, self.solid_max
        r = 0.5 * radius
        under = (x + r > lo[:, 0]) & (x - r < hi[:, 0]) & (z + r > lo[:, 2]) & (z - r < hi[:, 2])
        tops = np.concatenate([hi[under & (hi[:, 1] <= feet + step), 1], [0.0]])
        ramps = self._ramp_heights(x, z, r)
        return float(max(tops.max(), ramps[ramps <= feet + step].max(initial=0.0)))
