"""The package's version and home, in one place: setup.py, `tfmtl --version` and the notebooks read them."""

__version__ = "0.2.0"
REPOSITORY_URL = "https://github.com/tfmtl/tfmtl"
