"""Triangle-soup mesh builders. A vertex is 8 float32: position (3), normal (3), material id, object index.

Object index 0 is the static world (its object space is world space); dynamic objects are 1..N and
are placed by a per-object model matrix in the shaders. Winding is counter-clockwise seen from outside.
"""
from __future__ import annotations

import numpy as np

VERTEX_FLOATS = 8
VERTEX_FORMAT = "3f 3f 1f 1f"
VERTEX_ATTRS = ("in_pos", "in_normal", "in_mat", "in_obj")


def _unit_box() -> tuple[np.ndarray, np.ndarray]:
    pos, nrm = [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            n = np.zeros(3)
            n[axis] = sign
            u, v = np.zeros(3), np.zeros(3)
            u[(axis + 1) % 3], v[(axis + 2) % 3] = 1.0, 1.0
            if sign < 0:
                u, v = v, u  # keeps u x v == n, so the quad stays counter-clockwise from outside
            c = 0.5 + 0.5 * n
            corners = [c - 0.5 * u - 0.5 * v, c + 0.5 * u - 0.5 * v, c + 0.5 * u + 0.5 * v, c - 0.5 * u + 0.5 * v]
            for i in (0, 1, 2, 0, 2, 3):
                pos.append(corners[i])
                nrm.append(n)
    return np.array(pos), np.array(nrm)


_BOX_POS, _BOX_NRM = _unit_box()  # (36, 3) in [0, 1]^3


def boxes(mins: np.ndarray, maxs: np.ndarray, mats: np.ndarray, obj: int = 0) -> np.ndarray:
    """Axis-aligned boxes, (N, 3) mins and maxs -> (N * 36, 8) vertices."""
    mins, maxs = np.asarray(mins, np.float64).reshape(-1, 3), np.asarray(maxs, np.float64).reshape(-1, 3)
    n = len(mins)
    pos = mins[:, None, :] + _BOX_POS[None] * (maxs - mins)[:, None, :]  # (N, 36, 3)
    out = np.empty((n, 36, VERTEX_FLOATS), np.float32)
    out[..., 0:3] = pos
    out[..., 3:6] = _BOX_NRM[None]
    out[..., 6] = np.broadcast_to(np.asarray(mats, np.float32).reshape(-1, 1), (n, 36))
    out[..., 7] = obj
    return out.reshape(-1, VERTEX_FLOATS)


def _unit_sphere(rings: int, segments: int) -> np.ndarray:
    theta = np.linspace(0, np.pi, rings + 1)
    phi = np.linspace(0, 2 * np.pi, segments + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    grid = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1)  # (R+1, S+1, 3)
    a, b = grid[:-1, :-1], grid[1:, :-1]
    c, d = grid[1:, 1:], grid[:-1, 1:]
    tris = np.concatenate([np.stack([a, b, c], 2), np.stack([a, c, d], 2)], 0).reshape(-1, 3, 3)
    # Drop the degenerate triangles at the poles, then orient every triangle outwards.
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    gn = np.cross(e1, e2)
    keep = np.linalg.norm(gn, axis=1) > 1e-9
    tris, gn = tris[keep], gn[keep]
    flip = np.einsum("ij,ij->i", gn, tris.mean(1)) < 0
    tris[flip] = tris[flip][:, ::-1]
    return tris.reshape(-1, 3)


_SPHERE = _unit_sphere(8, 14)


def spheres(centers: np.ndarray, radii: np.ndarray, mats: np.ndarray, obj: int = 0) -> np.ndarray:
    centers = np.asarray(centers, np.float64).reshape(-1, 3)
    radii = np.asarray(radii, np.float64).reshape(-1)
    n, k = len(centers), len(_SPHERE)
    out = np.empty((n, k, VERTEX_FLOATS), np.float32)
    out[..., 0:3] = centers[:, None, :] + _SPHERE[None] * radii[:, None, None]
    out[..., 3:6] = _SPHERE[None]
    out[..., 6] = np.broadcast_to(np.asarray(mats, np.float32).reshape(-1, 1), (n, k))
    out[..., 7] = obj
    return out.reshape(-1, VERTEX_FLOATS)


def quad(corners: np.ndarray, mat: int, obj: int = 0) -> np.ndarray:
    """A planar quad from 4 corners given counter-clockwise seen from the side its normal faces."""
    c = np.asarray(corners, np.float64)
    n = np.cross(c[1] - c[0], c[2] - c[0])
    n /= np.linalg.norm(n)
    out = np.empty((6, VERTEX_FLOATS), np.float32)
    out[:, 0:3] = c[[0, 1, 2, 0, 2, 3]]
    out[:, 3:6] = n
    out[:, 6], out[:, 7] = mat, obj
    return out


def vertex_array(ctx, prog, vbo):
    """A vertex array over our vertex layout that skips the attributes `prog` does not use."""
    fmt, names = [], []
    for attr, f in zip(VERTEX_ATTRS, VERTEX_FORMAT.split()):
        if attr in prog:
            fmt.append(f)
            names.append(attr)
        else:
            fmt.append(f"{4 * int(f[0])}x")
    return ctx.vertex_array(prog, [(vbo, " ".join(fmt), *names)])


def ramp(lo, hi, mat: int, obj: int = 0) -> np.ndarray:
    """A wedge over the footprint [lo.x, hi.x] x [lo.z, hi.z], rising along +z from lo.y to hi.y:
    sloped top, two triangular sides, a vertical back (the bottom is never seen)."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    a, b = np.array([x0, y0, z0]), np.array([x1, y0, z0])
    c, d = np.array([x1, y1, z1]), np.array([x0, y1, z1])
    e, f = np.array([x1, y0, z1]), np.array([x0, y0, z1])
    faces = [quad([a, d, c, b], mat, obj) if _up([a, d, c]) else quad([a, b, c, d], mat, obj),
             quad([f, e, c, d], mat, obj),  # back, facing +z
             _tri([b, e, c], mat, obj, +1), _tri([a, d, f], mat, obj, -1)]
    return np.concatenate(faces)


def _up(c) -> bool:
    return np.cross(c[1] - c[0], c[2] - c[0])[1] > 0


def _tri(c, mat: int, obj: int, x_sign: int) -> np.ndarray:
    c = [np.asarray(p, np.float64) for p in c]
    n = np.cross(c[1] - c[0], c[2] - c[0])
    if np.sign(n[0]) != x_sign:
        c = c[::-1]
        n = -n
    out = np.empty((3, VERTEX_FLOATS), np.float32)
    out[:, 0:3] = c
    out[:, 3:6] = n / np.linalg.norm(n)
    out[:, 6], out[:, 7] = mat, obj
    return out
