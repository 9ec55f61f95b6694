"""Admission: job types (the graph catalog), checking a submission's payload and sources, and enqueueing it."""
