"""Render operators: a timeline planned into segments, rendered in parallel, mixed, joined."""
