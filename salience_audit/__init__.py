"""salience-audit: explain image classifiers at scale through their salience maps."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("salience-audit")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
