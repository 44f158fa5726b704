"""Fault and recovery actions and checks for the rest of the runbooks (seed 000-004): complete
outage, lock incidents, connection exhaustion, force logout, replica lag, pre-incident restore."""

from __future__ import annotations
