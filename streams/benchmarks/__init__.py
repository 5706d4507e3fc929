"""Published benchmark protocols: their tasks, expected data paths and sources."""
