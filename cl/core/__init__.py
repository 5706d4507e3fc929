"""The one loop and what it is made of: strategy and plugin protocols, runner, tracker,
metrics, results schema, checkpoints and compute accounting."""
