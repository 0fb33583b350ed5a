"""Serial scans: each patient's timeline, the progression rule and its alerts."""
