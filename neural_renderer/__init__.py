"""neurender: the causal generator (model, KV cache, sampler, training, distillation, pruning, data, eval)."""
