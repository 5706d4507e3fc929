"""Image-text data sources: images with one or more captions, from files and tar shards."""
