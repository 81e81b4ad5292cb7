"""Errors the fleet twin raises: readable messages that name what exists instead."""

from __future__ import annotations


class FleetError(ValueError):
    """A request the fleet cannot answer or carry out; the message says why in plain words."""


class UnknownNodeError(FleetError):
    """No node by that name in the cluster."""


class UnknownGpuError(FleetError):
    """No GPU at that index on the node."""


class UnknownJobError(FleetError):
    """No training job by that name."""


class UnsupportedXidError(FleetError):
    """The twin has no realistic message and effect for that Xid code."""


class ActionRefusedError(FleetError):
    """The action is not allowed in the current state (e.g. uncordoning someone else's cordon)."""
