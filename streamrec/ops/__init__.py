"""Operator commands: load, replay, status and the demo."""
