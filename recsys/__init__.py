"""recsys: a recommendation engine that learns from interactions and from item and user text."""

__version__ = "0.1.0"
