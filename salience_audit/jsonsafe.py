"""Turn nested results into strict JSON: undefined numbers become ``null``, never NaN/Infinity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def finite_number(value: Any) -> float | None:
    """``float(value)`` when it is a finite number (numbers and numeric strings), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` made of dict/list/str/int/float/bool/None only.

    Non-finite floats (NaN, +-inf) and pandas' NA become None; numpy scalars and arrays
    become Python numbers and lists; tuples and sets become lists; paths become strings;
    dict keys become strings. Anything else becomes its ``str``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return finite_number(obj)
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple, set)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
