"""The relay app: delivery service, directory and REST API (``api.py``, ``consumers.py``)."""
