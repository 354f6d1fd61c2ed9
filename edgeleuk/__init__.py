"""edgeleuk: a leukemia blood-smear classifier from training to a microscope-attached edge device.

Research use only: not a diagnostic device. Importing this package imports nothing heavy.
"""

__version__ = "0.1.0"

LABELS: tuple[str, ...] = ("Benign", "Early", "Pre", "Pro")
