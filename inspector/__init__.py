"""Inspector: factory inspection from photos and operator voice notes."""

__version__ = "0.1.0"
