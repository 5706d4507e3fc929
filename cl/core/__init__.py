"""Core of the library: strategy and plugin protocols, runner, tracker, metrics, results."""
