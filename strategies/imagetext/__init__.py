"""Continual vision-language pre-training on image-text pairs: losses and momentum models."""
