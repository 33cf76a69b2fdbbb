"""Training, distillation and pruning: their configs (config.py), the one loop (loop.py) and each objective."""
