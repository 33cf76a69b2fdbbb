"""The serving arms of the hourglass generator, by name, and the step each runs (neural_renderer.serving.arms
chooses among them; this table stands apart so that the frame paths' check can build an arm's step without
importing the chooser)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Arm:
    name: str
    cuda_graph: bool = False
    channels_last: bool = False
    fused: bool = False
    cpu: bool = False
    frame: bool = False  # the whole frame as one program (neural_renderer.serving.frame_path)
    megakernel: bool = False  # a fused arm whose trunk is one persistent launch (kernels.megakernel_trunk)

    @property
    def step_arm(self) -> str:
        """The step arm whose forward this arm runs (itself for a step arm)."""
        if not self.frame:
            return self.name
        return "fused" if self.fused else "graph"


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("eager"),
    Arm("cpu", cpu=True),
    Arm("graph", cuda_graph=True),
    Arm("graph+channels-last", cuda_graph=True, channels_last=True),
    Arm("fused", cuda_graph=True, fused=True),
    Arm("fused+channels-last", cuda_graph=True, channels_last=True, fused=True),
    Arm("megakernel", cuda_graph=True, fused=True, megakernel=True),
    Arm("frame-graph", cuda_graph=True, frame=True),
    Arm("frame-graph+fused", cuda_graph=True, fused=True, frame=True),
)}


class ArmStep:
    """`HourglassGenerator.forward_frame`'s contract for one arm. Converts `model` in place to channels-last
    when the arm says so; a fused arm keeps keys in kernel layout in the caches it writes, so one run
    (one StreamingSampler) must use it for every forward."""

    def __init__(self, model, arm: Arm):
        if arm.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model, self.arm, self.trunk, self.cpu = model, arm, None, None
        if arm.fused:
            from kernels.step_builder import hourglass_megakernel_trunk, hourglass_trunk

            self.trunk = (hourglass_megakernel_trunk if arm.megakernel else hourglass_trunk)(model)
        if arm.cpu:
            from neural_renderer.serving.cpu_step import CPUStep

            self.cpu = CPUStep(model)

    def __call__(self, x_noisy, cond, history, t, d, h, action, prompt, cache) -> torch.Tensor:
        if self.cpu is not None:
            return self.cpu(x_noisy, cond, history, t, d, h, action, prompt, cache)
        return self.model.forward_frame(x_noisy, cond, history, t, d, h, action, prompt, cache, trunk=self.trunk)
