"""The first-person player: walking physics against the world, and the scripted controllers that drive it
headless (walk, turn, strafe, look, still, cuts, mixed). An action is a vector laid out as
bridge.channels.ACTION_LAYOUT (keys 0/1, mouse deltas in degrees this frame)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.channels import ACTION_DIM, ACTION_LAYOUT
from demos.camera import Camera
from demos.world import World

A = {name: i for i, name in enumerate(ACTION_LAYOUT)}
SCRIPTS = ("walk", "turn", "strafe", "look", "still", "cuts", "mixed")
# How often each behaviour is picked for a segment of the "mixed" script (mostly walking, as players do).
MIXED_WEIGHTS = {"walk": 0.45, "turn": 0.12, "strafe": 0.13, "look": 0.15, "still": 0.15}


@dataclass
class PlayerConfig:
    walk_speed: float = 4.0  # m/s
    run_speed: float = 8.0
    crouch_speed: float = 2.0
    eye_height: float = 1.65
    crouch_eye_height: float = 1.0
    radius: float = 0.3
    step_height: float = 0.45
    jump_speed: float = 5.0
    gravity: float = 15.0
    max_pitch: float = 85.0


class Player:
    def __init__(self, world: World, x: float, z: float, yaw: float = 0.0, config: PlayerConfig | None = None):
        self.world, self.cfg = world, config or PlayerConfig()
        self.teleport(x, z, yaw)

    def teleport(self, x: float, z: float, yaw: float, pitch: float = 0.0) -> None:
        self.x, self.z, self.yaw, self.pitch = float(x), float(z), float(yaw), float(pitch)
        self.feet = self.world.ground(self.x, self.z, 1e3, self.cfg.radius, 0.0)  # top surface under the spot
        self.vy, self.crouching, self.on_ground = 0.0, False, True
        self.last_moved = 0.0

    def step(self, action: np.ndarray, dt: float) -> None:
        c = self.cfg
        a = np.asarray(action, np.float32)
        self.yaw = (self.yaw + float(a[A["mouse_dx"]])) % 360.0
        self.pitch = float(np.clip(self.pitch - float(a[A["mouse_dy"]]), -c.max_pitch, c.max_pitch))
        self.crouching = a[A["crouch"]] > 0.5
        speed = c.crouch_speed if self.crouching else (c.run_speed if a[A["run"]] > 0.5 else c.walk_speed)
        yaw = np.radians(self.yaw)
        fwd, right = np.array([np.sin(yaw), -np.cos(yaw)]), np.array([np.cos(yaw), np.sin(yaw)])
        wish = fwd * (a[A["forward"]] - a[A["back"]]) + right * (a[A["right"]] - a[A["left"]])
        n = np.linalg.norm(wish)
        delta = wish / n * speed * dt if n > 0 else np.zeros(2)
        x0, z0 = self.x, self.z
        height = c.crouch_eye_height + 0.2 if self.crouching else c.eye_height + 0.2
        for axis in (0, 1):  # per axis, so the player slides along walls
            nx, nz = (self.x + delta[0], self.z) if axis == 0 else (self.x, self.z + delta[1])
            if not self.world.blocked(nx, nz, self.feet, c.radius, c.step_height, height):
                self.x, self.z = nx, nz
        self.last_moved = float(np.hypot(self.x - x0, self.z - z0))
        if a[A["jump"]] > 0.5 and self.on_ground:
            self.vy = c.jump_speed
        ground = self.world.ground(self.x, self.z, self.feet, c.radius, c.step_height)
        self.vy -= c.gravity * dt
        feet = self.feet + self.vy * dt
        if feet <= ground:
            feet, self.vy, self.on_ground = ground, 0.0, True
        else:
            self.on_ground = False
        self.feet = feet

    def camera(self, aspect: float, fov_y_deg: float = 70.0) -> Camera:
        eye = self.cfg.crouch_eye_height if self.crouching else self.cfg.eye_height
        return Camera((self.x, self.feet + eye, self.z), self.yaw, self.pitch, fov_y_deg=fov_y_deg, aspect=aspect)


class ScriptedController:
    """Deterministic actions for frame i from (seed, script). `__call__` returns (action, cut); on a cut the
    caller teleports the player with `spawn(...)`."""

    def __init__(self, script: str, seed: int, fps: float = 30.0):
        if script not in SCRIPTS:
            raise ValueError(f"unknown script {script!r}; choose from {SCRIPTS}")
        self.script, self.fps = script, fps
        self.rng = np.random.default_rng([int(seed), 29])
        self.segment, self.left, self.stuck = script, 0, 0
        self.turn_left, self.phase = 0, 0.0
        self.params = {}

    def spawn(self, world: World) -> tuple[float, float, float]:
        x, z = world.spawn_points[self.rng.integers(len(world.spawn_points))]
        return float(x), float(z), float(self.rng.choice([0.0, 90.0, 180.0, 270.0]) + self.rng.uniform(-30, 30))

    def _new_segment(self) -> None:
        if self.script == "mixed":
            self.segment = str(self.rng.choice(list(MIXED_WEIGHTS), p=list(MIXED_WEIGHTS.values())))
        self.left = int(self.rng.integers(int(1.0 * self.fps), int(3.5 * self.fps)))
        self.params = {"dir": float(self.rng.choice([-1.0, 1.0])), "rate": float(self.rng.uniform(1.0, 3.5)),
                       "run": bool(self.rng.random() < 0.25), "jump_at": int(self.rng.integers(0, 200)),
                       "crouch": bool(self.rng.random() < 0.1)}

    def __call__(self, i: int, player: Player) -> tuple[np.ndarray, bool]:
        a = np.zeros(ACTION_DIM, np.float32)
        cut = False
        if self.left <= 0:
            self._new_segment()
            if self.script == "cuts" or (self.script == "mixed" and self.rng.random() < 0.12):
                cut = i > 0
        self.left -= 1
        p, seg = self.params, self.segment
        if seg == "cuts":
            seg = "walk"
        if seg == "walk":
            a[A["forward"]] = 1.0
            a[A["run"]] = float(p["run"])
            a[A["crouch"]] = float(p["crouch"])
            a[A["jump"]] = float(self.left == p["jump_at"])
            if i > 0 and player.last_moved < 0.3 * player.cfg.walk_speed / self.fps:
                self.stuck += 1
            if self.stuck > 2 and self.turn_left <= 0:
                self.turn_left, self.stuck = int(self.rng.integers(10, 25)), 0
                p["dir"] = float(self.rng.choice([-1.0, 1.0]))
            if self.turn_left > 0:  # blocked: turn away smoothly instead of pushing into the wall
                self.turn_left -= 1
                a[A["mouse_dx"]] = 8.0 * p["dir"]
                a[A["forward"]] = 0.0
            else:
                a[A["mouse_dx"]] = 0.6 * np.sin(i / self.fps * 0.7 + p["rate"]) * p["dir"]
        elif seg == "turn":
            a[A["mouse_dx"]] = p["dir"] * p["rate"] * 1.5
        elif seg == "strafe":
            a[A["left" if p["dir"] < 0 else "right"]] = 1.0
        elif seg == "look":
            self.phase += 1.0 / self.fps
            a[A["mouse_dx"]] = p["rate"] * 1.5 * np.cos(self.phase * 1.3) * p["dir"]
            a[A["mouse_dy"]] = p["rate"] * 0.8 * np.sin(self.phase * 2.1)
        # "still": all zeros
        return a, cut
