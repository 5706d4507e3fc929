"""Settings of a run: TOML configs and overrides, option validation, name registries, and the
composition of a run from its config (:mod:`cl.config.experiment`)."""

from cl.config.run_config import RunConfig, config_difference

__all__ = ["RunConfig", "config_difference"]
