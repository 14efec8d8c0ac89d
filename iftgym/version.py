"""The installed version of iftgym (a module of its own, so that any layer can read it without importing the rest)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("iftgym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
