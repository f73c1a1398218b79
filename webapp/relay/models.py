"""Relay models. None yet: the delivery service adds its topics, envelopes and directory here."""
