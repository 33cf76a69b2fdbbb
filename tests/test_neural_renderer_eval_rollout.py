"""The long rollout drives the shipped hourglass exactly as the daemon does (history, world group in the loop)."""
import numpy as np

from neural_renderer.eval.rollout import rollout
from neural_renderer.eval.suites import EVAL_SEED_BASE


def test_rollout_of_the_shipped_tiny_scores_every_frame():
    res = rollout("tiny", frames=24, window=8, seed=EVAL_SEED_BASE + 3, style="night", device="cpu", steps=2,
                  progress=False)
    assert res["frames"] == 24 and res["renderer"]["arch"] == "hourglass" and res["renderer"]["history"]
    assert len(res["psnr_per_100"]) == 1 and np.isfinite(res["psnr_first"]) and np.isfinite(res["psnr_last"])
    # the model beats the engine pass on this look (night: the engine pass is far too bright)
    assert res["psnr_first"] > res["engine_psnr_first"] + 3.0, res
    # the stateless ablation was sampled (every 10th frame) in both windows
    assert np.isfinite(res["ablation_psnr_first"]) and np.isfinite(res["ablation_psnr_last"])
    assert res["drift_db"] == res["psnr_first"] - res["psnr_last"]
