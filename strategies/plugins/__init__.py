"""Plugins attachable to any strategy: exemplar replay, zero-shot retention monitor."""
