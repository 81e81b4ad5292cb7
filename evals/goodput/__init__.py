"""The fleet goodput study: what automated triage is worth over 30 days of large training fleets."""
