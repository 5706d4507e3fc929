"""Several problems of one config, gathered and raised together (:class:`ConfigErrors`).

Reading a config (:meth:`cl.config.RunConfig.from_dict`, ``--set``, a ``[sweep]`` table)
and checking it (:mod:`cl.config.validate`) go on after a mistake, so that the user sees
every one in one message instead of one per attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cl.errors import OptionError, ProtocolError

#: The errors that name a user's mistake in a config (collected, not raised one by one).
CONFIG_ERRORS: tuple[type[BaseException], ...] = (ValueError, OptionError, ProtocolError,
                                                  FileNotFoundError)


class ConfigErrors(OptionError, ValueError):
    """Several problems in one config; the message lists each on its own line.

    A ``TypeError`` and a ``ValueError`` alike, so callers catching either of the
    single errors it gathers still catch it.
    """

    def __init__(self, errors: list[BaseException], where: str = "config") -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {err}" for err in self.errors)
        super().__init__(f"{len(self.errors)} problems in {where}:\n{lines}")


class Problems:
    """Collects the config errors raised inside :meth:`catch` blocks."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    @contextmanager
    def catch(self) -> Iterator[None]:
        try:
            yield
        except CONFIG_ERRORS as err:
            self.errors.append(err)

    def raise_if_any(self, where: str = "config") -> None:
        """Raise the one error as it is, several as :class:`ConfigErrors`; nothing when none."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors, where)


__all__ = ["CONFIG_ERRORS", "ConfigErrors", "Problems"]
