"""Thin DVC stage scripts: ``python -m stages.<name>``; all logic lives in ``kennen``."""
