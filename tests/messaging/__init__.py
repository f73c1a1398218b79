"""Messaging tests: clients, agents and the CLI against a real relay."""
