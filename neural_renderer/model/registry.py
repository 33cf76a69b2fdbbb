"""Generator sizes by name (the DiT-style model registry) and the one way to build a model from them.

`GeneratorConfig` says everything a checkpoint needs to be rebuilt; `MODELS` maps a size name to a
factory and is what the CLI offers as `--model` choices. A new architecture adds its factories here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from neural_renderer.model.dit import CausalDiT
from neural_renderer.model.inputs import WORLD_PERIODS


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
    # the hourglass architecture (arch="hourglass"): conv levels at 1, 1/2, ... of the frame with these
    # widths, the trunk at 1/patch (patch = 2**len(widths)), FiLM ResBlocks per level in encoder and decoder
    arch: str = "dit"
    widths: tuple = ()
    enc_blocks: tuple = ()
    dec_blocks: tuple = ()
    history_noise: float = 0.0  # inference: noise level put on the previous output before reprojection
    sink_every: int = 0  # inference (hourglass): refresh the sinks every N frames (KVCache); 0 = the run's first frames
    use_sinks: bool = True  # inference (hourglass): False masks the sinks (the window alone)
    # the world group (model/inputs.py): 0 = not read (every checkpoint from before it), else the number of
    # WORLD_PERIODS the stem reads, recorded so a checkpoint trained on another table fails loudly
    world_freqs: int = 0

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
        known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# -- the hourglass generator (what ships): any frame size, reprojected history -----------------------


def hg_micro() -> GeneratorConfig:  # tests and smoke runs only
    return GeneratorConfig("hg-micro", arch="hourglass", resolution=32, patch=8, dim=64, depth=2, heads=1, window=1,
                           sinks=1, widths=(8, 8, 16), enc_blocks=(0, 0, 1), dec_blocks=(0, 1, 1), context_noise=0.0,
                           world_freqs=len(WORLD_PERIODS))


def tiny() -> GeneratorConfig:  # CPU serving at 128-256 pixels
    return GeneratorConfig("tiny", arch="hourglass", resolution=128, patch=8, dim=128, depth=4, heads=2, window=2,
                           sinks=1, widths=(16, 32, 64), enc_blocks=(0, 1, 1), dec_blocks=(0, 1, 1), context_noise=0.0,
                           world_freqs=len(WORLD_PERIODS))


def base() -> GeneratorConfig:  # GPU serving at 512 to 1280x720
    return GeneratorConfig("base", arch="hourglass", resolution=512, patch=16, dim=256, depth=8, heads=4, window=2,
                           sinks=1, widths=(24, 48, 96, 192), enc_blocks=(0, 0, 1, 1), dec_blocks=(0, 1, 1, 1),
                           context_noise=0.0, world_freqs=len(WORLD_PERIODS))


# -- the first architecture: a DiT over raw pixel patches (kept for its checkpoints and the kernels) ----


def micro() -> GeneratorConfig:  # tests and smoke runs only
    return GeneratorConfig("micro", resolution=32, patch=8, dim=64, depth=2, heads=1, window=2, sinks=1)


def dit_tiny() -> GeneratorConfig:
    return GeneratorConfig("dit-tiny", resolution=128, patch=8, dim=128, depth=6, heads=2, window=2, sinks=1)


def small() -> GeneratorConfig:
    return GeneratorConfig("small", resolution=256, patch=16, dim=192, depth=6, heads=3, window=3, sinks=1)


def dit_base() -> GeneratorConfig:
    return GeneratorConfig("dit-base", resolution=512, patch=16, dim=256, depth=8, heads=4, window=3, sinks=1)


MODELS = {"hg-micro": hg_micro, "tiny": tiny, "base": base,
          "micro": micro, "dit-tiny": dit_tiny, "small": small, "dit-base": dit_base}


def build(name_or_cfg: str | GeneratorConfig):
    """A size name or a config -> the model of its architecture (HourglassGenerator or CausalDiT)."""
    cfg = MODELS[name_or_cfg]() if isinstance(name_or_cfg, str) else name_or_cfg
    if cfg.arch == "hourglass":
        from neural_renderer.model.hourglass import HourglassGenerator

        return HourglassGenerator(cfg)
    return CausalDiT(cfg)
