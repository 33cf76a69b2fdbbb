"""The causal generator: its architecture and sizes (registry.py), KV cache, flow matching, engine inputs and checkpoints."""
