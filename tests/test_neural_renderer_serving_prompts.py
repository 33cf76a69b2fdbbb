"""The real prompt encoder loads with this project installed (our top-level `kernels` package shadows
Hugging Face's `kernels`, which transformers probes for), reproduces the committed
table the trainer reads, and places paraphrases of a look nearer each other than other looks."""
import torch

from bridge.styles import STYLES
from neural_renderer.serving.prompts import PromptEncoder, encode_prompt, load_table, lookup, style_embeddings


def test_encoder_loads_and_matches_committed_table():
    enc = PromptEncoder()
    texts, styles, emb = load_table()
    assert set(styles) == set(STYLES) and emb.shape == (len(texts), 384)
    fresh = enc.encode(texts[:6])
    torch.testing.assert_close(fresh, emb[:6], atol=2e-3, rtol=0)  # bf16-free float32 table, same model
    # free text goes through the encoder; table text through the table
    free = encode_prompt("a rainy cyberpunk street with neon signs", enc)
    assert free.shape == (384,) and abs(float(free.norm()) - 1.0) < 1e-3
    assert lookup("a rainy cyberpunk street with neon signs") is None
    assert torch.equal(encode_prompt(STYLES["night"], enc), lookup(STYLES["night"]))
    # meaning: "snowy winter evening" is nearer to the winter look than to the sunset look
    q = enc.encode("a snowy cold winter scene")
    table = style_embeddings()
    sims = {s: float((table[s] @ q).max()) for s in table}
    assert max(sims, key=sims.get) == "winter", sims
