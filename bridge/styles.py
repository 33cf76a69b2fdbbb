"""The named looks and their text prompts: what the generator is conditioned on for each style.

The world renderer (`demos`) pairs each name with its lighting parameters; the generator, its
training data and its evaluation read the prompt texts from here.
"""
from __future__ import annotations

STYLES: dict[str, str] = {
    "sunny": "a sunny afternoon in a quiet town, warm sunlight, crisp shadows, blue sky",
    "sunset": "a golden sunset, long orange shadows, pink and purple sky",
    "night": "a dark night lit by warm street lamps, deep blue sky",
    "winter": "a snowy winter day, snow on the ground and roofs, cold light",
    "foggy": "a foggy morning, soft grey light, thick mist hiding the distance",
    "cartoon": "a cel-shaded cartoon, flat bright colours, bold black outlines",
    "autumn": "an autumn afternoon, orange and red leaves, soft warm light",
}

# A look no default training or evaluation data contains (dataset make, the eval suites and the trainer
# use STYLES only): it stands in for a user's own game in the record -> fine-tune -> serve -> score loop
# (`neurender demo --record NAME --style ink`).
UNSEEN_STYLES: dict[str, str] = {
    "ink": "an ink-and-wash painting, black brush strokes and grey washes on white rice paper",
}
