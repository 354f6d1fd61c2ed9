"""The host's evaluate stage: metrics and figures (also written by training), the robustness suite,
the out-of-distribution sets, their report through the device's run loop, and the scores compared."""
