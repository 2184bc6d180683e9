"""Length units of pixel sizes: the spellings met in files and on the command line, and
exact conversion between them."""

from __future__ import annotations

from typing import Any

import numpy as np

# Units a Movie may carry.
_MOVIE_UNITS = ("A", "nm", "um")


# Spellings of length units met in files and on the command line, lower-cased.
_UNIT_ALIASES = {
    "m": "m",
    "mm": "mm",
    "um": "um",
    "µm": "um",  # micro sign
    "μm": "um",  # greek mu
    "\\u00b5m": "um",  # ImageJ writes the micro sign escaped
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "micrometre": "um",
    "nm": "nm",
    "nanometer": "nm",
    "nanometre": "nm",
    "a": "A",
    "å": "A",  # latin a with ring
    "Å": "A",  # angstrom sign, which lower() leaves alone
    "ang": "A",
    "angstrom": "A",
    "angstroms": "A",
    "pm": "pm",
}


# Powers of ten in metres: converting with exact integer powers keeps 0.05 nm = 0.5 A
# exact, where multiplying by 1e-9 and dividing by 1e-10 would not.
_LENGTH_EXP = {"m": 0, "mm": -3, "um": -6, "nm": -9, "A": -10, "pm": -12}


def movie_unit(unit: str | None) -> str:
    """Canonical Movie unit ("A", "nm" or "um") for a spelling of it."""
    canonical = length_unit(unit)
    if canonical not in _MOVIE_UNITS:
        raise ValueError(
            f"unsupported pixel unit {unit!r}; use 'A' (angstrom), 'nm' or 'um'"
        )
    return canonical


def length_unit(unit: Any) -> str | None:
    """Canonical length unit for a spelling found in a file, or None if not a length."""
    if not isinstance(unit, str):
        return None
    unit = unit.strip()
    return _UNIT_ALIASES.get(unit, _UNIT_ALIASES.get(unit.lower()))


def length_with_unit(value: Any, unit: Any) -> tuple[float, str] | None:
    """(value, canonical unit), or None if ``unit`` is not a length or ``value`` not positive."""
    canonical = length_unit(unit)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if canonical is None or not (np.isfinite(value) and value > 0):
        return None
    return value, canonical


def convert_length(value: float, unit: str, target: str) -> float:
    """``value`` in canonical length ``unit`` expressed in ``target``."""
    power = _LENGTH_EXP[unit] - _LENGTH_EXP[target]
    return value * 10**power if power >= 0 else value / 10**-power
