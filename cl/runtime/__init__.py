"""Process-level services: atomic I/O, seeding, torch.distributed helpers, data loading."""
