"""The subcommands of `neurender` (listed in neural_renderer/cli.py): each parses, calls one library function and prints."""
