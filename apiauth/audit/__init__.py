"""The audit log: one function records every event (events.py), one page shows them (views.py)."""
