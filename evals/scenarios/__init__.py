"""Scored fault scenarios: a fleet, a timeline of injected faults, and what the platform must do."""
