"""The package's version: a leaf that imports nothing, so no module imports the package root
(and its whole public API) only to learn it."""

__version__ = "0.1.0"
