"""Error types that name a user's mistake; the command line prints them as one line (exit 2).

Plain ``TypeError``/``KeyError`` raised deeper inside the library are bugs and
keep their traceback; these subclasses mark the ones that are the user's to fix.
"""

from __future__ import annotations


class OptionError(TypeError):
    """A config or ``--set`` value of the wrong type; the message names the option."""


class ProtocolError(TypeError):
    """A user strategy or plugin that does not follow its protocol (missing or misnamed hooks)."""


class PluginError(RuntimeError):
    """A plugin hook raised; ``plugin`` and ``hook`` say where."""

    def __init__(self, plugin: str, hook: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed in {hook}: {type(error).__name__}: {error}")
        self.plugin, self.hook = plugin, hook


class RunDirectoryInUse(RuntimeError):
    """Another live process holds the run directory's lock; the message names it."""


class IntegrityError(ValueError):
    """A file's contents do not match the checksum written with them (damaged or edited)."""


class PathRefused(PermissionError):
    """A path the library would write inside a run, sweep or cache directory is not one it may
    write: a link planted there, or a directory, pipe or device in the way; the message names
    it. See :mod:`cl.runtime.io`."""


class LinkRefused(PathRefused):
    """The refused path is a symbolic link (or a hard link, for a file written in place)."""


class ResourceError(RuntimeError):
    """The machine ran out of a resource (memory) for the sizes a run asked for; the message
    names the settings to lower."""


#: Errors the command line reports as one line with exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, OptionError, ProtocolError, FileNotFoundError, PermissionError, PluginError,
    FloatingPointError, RunDirectoryInUse, ResourceError,
)
