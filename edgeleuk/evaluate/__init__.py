"""The host's evaluate stage: out-of-distribution sets, their report, and the scores compared."""
