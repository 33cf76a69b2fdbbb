"""Evaluation of renderers: metrics, suites of held-out sequences, the runner and its report.

`run_eval(renderer_spec, suite, ...) -> dict` is the Python API (see runner.py); `neurender eval` wraps it.
"""
from .runner import run_eval

__all__ = ["run_eval"]
