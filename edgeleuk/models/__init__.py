"""Packaged default model: device variants and their manifest (the Keras source stays out of the wheel)."""
