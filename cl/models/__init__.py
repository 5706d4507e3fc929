"""Backbones (open_clip, pixels), weights resolution, prompts and zero-shot heads, feature
extraction and its on-disk cache."""
