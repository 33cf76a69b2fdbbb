"""Generator sizes by name (the DiT-style model registry) and the one way to build a model from them.

`GeneratorConfig` says everything a checkpoint needs to be rebuilt; `MODELS` maps a size name to a
factory and is what the CLI offers as `--model` choices. A new architecture adds its factories here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from neural_renderer.model.dit import CausalDiT


@dataclass
class GeneratorConfig:
    name: str = "tiny"
    resolution: int = 128
    patch: int = 8
    dim: int = 128
    depth: int = 6
    heads: int = 2
    mlp_ratio: int = 4
    window: int = 2  # W: earlier frames kept in the rolling window
    sinks: int = 1  # S: first frames of a run kept forever
    steps: int = 2  # default number of Euler steps at inference
    context_noise: float = 0.4  # noise level of the frame written into the cache (inference; tuned on a train seed)
    shortcut: bool = False  # True once trained with step-size targets (shortcut distillation)

    @property
    def tokens(self) -> int:
        return (self.resolution // self.patch) ** 2

    @property
    def slots(self) -> int:  # sinks + window + current
        return self.sinks + self.window + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def micro() -> GeneratorConfig:  # tests and smoke runs only
    return GeneratorConfig("micro", resolution=32, patch=8, dim=64, depth=2, heads=1, window=2, sinks=1)


def tiny() -> GeneratorConfig:
    return GeneratorConfig("tiny", resolution=128, patch=8, dim=128, depth=6, heads=2, window=2, sinks=1)


def small() -> GeneratorConfig:
    return GeneratorConfig("small", resolution=256, patch=16, dim=192, depth=6, heads=3, window=3, sinks=1)


def base() -> GeneratorConfig:
    return GeneratorConfig("base", resolution=512, patch=16, dim=256, depth=8, heads=4, window=3, sinks=1)


MODELS = {"micro": micro, "tiny": tiny, "small": small, "base": base}


def build(name_or_cfg: str | GeneratorConfig) -> CausalDiT:
    cfg = MODELS[name_or_cfg]() if isinstance(name_or_cfg, str) else name_or_cfg
    return CausalDiT(cfg)
