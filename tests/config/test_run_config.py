"""The [protocol] table of a run config: read, set with --set, written back, part of the identity."""

import tomllib

import pytest

from cl.config import RunConfig


def test_protocol_table_round_trips_and_counts_in_the_identity():
    config = RunConfig.from_dict({"strategy": {"name": "finetune"},
                                  "protocol": {"hp_trials": 16, "ranges": {"lr": ["uniform", 0.01, 0.1]}}})
    assert config.protocol == {"hp_trials": 16, "ranges": {"lr": ["uniform", 0.01, 0.1]}}
    assert RunConfig.from_dict(tomllib.loads(config.to_toml())).protocol == config.protocol
    config.apply_set("protocol.hp_trials=4")
    config.apply_set('protocol.ranges.label_smoothing=["choice", 0.0, 0.1]')
    assert config.protocol == {"hp_trials": 4, "ranges": {"lr": ["uniform", 0.01, 0.1],
                                                          "label_smoothing": ["choice", 0.0, 0.1]}}
    assert config.identity()["protocol"]["hp_trials"] == 4  # a resume with another protocol is refused
    assert "protocol" not in RunConfig().to_dict()  # no table when unused


def test_protocol_is_a_table_not_a_key():
    with pytest.raises(ValueError, match="unknown config key 'protocol'"):
        RunConfig().set_top("protocol", 3)
    with pytest.raises(TypeError, match="a \\[protocol\\] table expected"):
        RunConfig.from_dict({"protocol": 3})
