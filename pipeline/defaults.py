"""Defaults that the library uses and the command line shows, in a module that imports
nothing: `quoteguard calibrate --help` prints them without loading numpy or scipy.

The modules that use them (`pipeline.calibration.metrics`, `.profile`, `pipeline.upgrade_gate`)
import them from here, so a default has one home.
"""

from __future__ import annotations

from typing import Literal

#: Confidence of the lower bound an auto-action threshold's precision must clear.
DEFAULT_CONFIDENCE = 0.95
DEFAULT_BINS = 15
DEFAULT_BOOTSTRAP = 1000
#: A wrong automatic action costs more than a review, so the default asks for 19 in 20 right.
DEFAULT_TARGET_PRECISION = 0.95
#: The upgrade gate compares precision among the most confident half of the units.
DEFAULT_COVERAGE = 0.5
#: About one standard error of a precision near 0.95 measured on ~100 units.
DEFAULT_TOLERANCE = 0.02

PrecisionBound = Literal["wilson", "point"]
