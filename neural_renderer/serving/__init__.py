"""Serving the generator: the daemon backend (renderer.py), the streaming sampler (generator.py), prompts, and their benchmarks."""
