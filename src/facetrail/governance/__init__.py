"""Governance: who may search, why, and the record of what they did."""
