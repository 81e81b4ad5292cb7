"""The fleet-twin backend (cluster, maintenance, telemetry)."""
