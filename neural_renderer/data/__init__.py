"""Datasets of the game world: the on-disk format, its writer, and the memory-mapped reader training uses.

Light on purpose: importing this package pulls in numpy only (no torch, no OpenGL).
"""
from .format import DatasetError, EvalSeedError
from .reader import Clip, SequenceDataset
from .writer import SequencePlan

__all__ = ["Clip", "DatasetError", "EvalSeedError", "SequenceDataset", "SequencePlan"]
