"""Training, distillation, pruning and fine-tuning on recordings: their configs (config.py), the one loop
(loop.py) and each objective."""
