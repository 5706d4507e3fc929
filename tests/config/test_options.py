"""Option validation against factory signatures (config files and --set)."""

from typing import Literal

import pytest

from cl.config.options import bind_options, parse_value


def factory(*, n: int = 1, rate: float = 0.1, mode: Literal["a", "b"] = "a",
            stop: int | None = 2020, names: list[str] | None = None, flag: bool = False) -> None:
    """A factory whose annotations are the schema."""


@pytest.mark.parametrize("text, value", [("5", 5), ("0.5", 0.5), ("true", True),
                                         ("[1, 2]", [1, 2]), ("cosine", "cosine"),
                                         ('"quoted"', "quoted")])
def test_set_values_parse_as_toml_literals_or_strings(text, value):
    assert parse_value(text) == value


def test_values_are_coerced_to_the_annotations():
    bound = bind_options(factory, {"n": 3, "rate": 1, "mode": "b", "stop": "none",
                                   "names": ["x"], "flag": True}, where="f")
    assert bound == {"n": 3, "rate": 1.0, "mode": "b", "stop": None, "names": ["x"], "flag": True}
    assert isinstance(bound["rate"], float)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"m": 1}, ValueError, "no option 'm'; valid options: flag, mode, n, names, rate, stop"),
        ({"n": "3"}, TypeError, "option 'n' expects an integer, got '3'"),
        ({"n": True}, TypeError, "expects an integer"),
        ({"mode": "c"}, TypeError, r"must be one of \['a', 'b'\], got 'c'"),
        ({"flag": "yes"}, TypeError, "expects true or false"),
        ({"names": "x"}, TypeError, "expects"),
        ({"stop": 1.5}, TypeError, "option 'stop' expects int | NoneType, got 1.5"),
    ],
)
def test_bad_options_name_the_key_and_the_expected_type(options, error, match):
    with pytest.raises(error, match=match):
        bind_options(factory, options, where="f")
