"""What a model can price: its service area and pick-up years, and the check that refuses the rest.

:class:`ServiceArea` is the training extent ``model.json`` records (or, for an older model, the
data contract's) plus a margin in degrees and years. :func:`check_domain` refuses the first trip
outside it with a ``UserError`` naming the instance, the field and the accepted range (with a
hint for flipped signs and swapped coordinates): nothing outside the domain is clipped to a
fare. See docs/serve.md ("What the server refuses to price").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common import contract
from components.common.errors import UserError

_FEW_ROWS = 8  # up to this many trips, the domain is checked value by value (numpy costs more)

# The service area's margin around the training extent: coordinates are snapped to city blocks
# (250 m), so a trip one block beyond the outermost trained one is still a DC trip.
DEFAULT_AREA_MARGIN_DEG = 0.01  # about 1.1 km of latitude, 0.9 km of longitude in DC
DEFAULT_YEAR_MARGIN = 1  # years before/after the training years the model still prices
# A model directory written before training recorded its extent: the data contract's observed
# extent of all DC trips (a model cannot have trained on more) and the years of the trip files.
CONTRACT_EXTENT: dict[str, tuple[float, float]] = {
    "lat": contract.DC_LAT_RANGE,
    "lon": contract.DC_LON_RANGE,
    "year": (2015.0, 2019.0),
}
_LAT_COLUMNS = ("origin_lat", "dest_lat")
_LON_COLUMNS = ("origin_lon", "dest_lon")


@dataclass(frozen=True)
class ServiceArea:
    """What the model can price: a latitude/longitude box and a range of pick-up years."""

    lat: tuple[float, float]
    lon: tuple[float, float]
    years: tuple[int, int]
    source: str  # where the extent came from, for the start-up log

    @classmethod
    def from_extent(
        cls,
        extent: Mapping[str, Sequence[float]],
        source: str,
        margin_deg: float = DEFAULT_AREA_MARGIN_DEG,
        year_margin: int = DEFAULT_YEAR_MARGIN,
    ) -> ServiceArea:
        if not (math.isfinite(margin_deg) and margin_deg >= 0):
            raise UserError(f"--area-margin-deg: expected a number >= 0, got {margin_deg}")
        if year_margin < 0:
            raise UserError(f"--year-margin: expected an integer >= 0, got {year_margin}")
        (la0, la1), (lo0, lo1), (y0, y1) = (extent[k] for k in ("lat", "lon", "year"))
        return cls(
            lat=(round(la0 - margin_deg, 6), round(la1 + margin_deg, 6)),
            lon=(round(lo0 - margin_deg, 6), round(lo1 + margin_deg, 6)),
            years=(int(y0) - year_margin, int(y1) + year_margin),
            source=source,
        )

    def describe(self) -> str:
        return (
            f"latitude {self.lat[0]} to {self.lat[1]}, longitude {self.lon[0]} to {self.lon[1]}, "
            f"pick-up years {self.years[0]} to {self.years[1]}"
        )


def extent_of(meta: Mapping, meta_path: Path) -> tuple[dict[str, tuple[float, float]], str]:
    """The training extent ``model.json`` records (``extent``), or the contract's for older models."""
    if "extent" not in meta:
        return dict(CONTRACT_EXTENT), "the data contract (model.json has no training extent)"
    extent = meta["extent"]
    out = {}
    for key in ("lat", "lon", "year"):
        pair = extent.get(key) if isinstance(extent, Mapping) else None
        ok = (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
            and pair[0] <= pair[1]
        )
        if not ok:
            raise UserError(
                f"{meta_path}: extent.{key}: expected [low, high] (finite numbers, low <= high), got {pair!r}"
            )
        out[key] = (float(pair[0]), float(pair[1]))
    return out, "the training extent in model.json"


def inside(area: ServiceArea, columns: Mapping[str, np.ndarray]) -> bool:
    """Whether every trip lies in the service area and the model's years (the usual answer,
    found with a comparison per value for a few trips, else two reductions per column)."""
    bounds = [(c, area.lat) for c in _LAT_COLUMNS] + [(c, area.lon) for c in _LON_COLUMNS]
    bounds.append(("year", area.years))
    for name, (lo, hi) in bounds:
        values = columns[name]
        if len(values) <= _FEW_ROWS:
            if not all(lo <= v <= hi for v in values.tolist()):
                return False
        elif len(values) and not (values.min() >= lo and values.max() <= hi):
            return False
    return True


def check_domain(
    area: ServiceArea, columns: Mapping[str, np.ndarray], name_of: Callable[[int, str], str]
) -> None:
    """Refuse the first trip outside the service area or the model's years, naming its field
    (``name_of(row, clean_name)``: the name the request used)."""
    if inside(area, columns):
        return
    for clean_cols, (lo, hi), kind in (
        (_LAT_COLUMNS, area.lat, "latitude"),
        (_LON_COLUMNS, area.lon, "longitude"),
    ):
        for clean in clean_cols:
            values = columns[clean]
            bad = (values < lo) | (values > hi)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                v = float(values[i])
                other = area.lon if kind == "latitude" else area.lat
                hint = ""
                if lo <= -v <= hi:
                    hint = f" (sign flipped? {-v} would be inside)"
                elif other[0] <= v <= other[1]:
                    hint = " (latitude and longitude swapped?)"
                raise UserError(
                    f"instance {i}: field {name_of(i, clean)}: {v} is outside the service area the model "
                    f"was trained on ({kind} {lo} to {hi}){hint}"
                )
    years = columns["year"]
    y0, y1 = area.years
    bad = (years < y0) | (years > y1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"instance {i}: field {name_of(i, contract.PICKUP)}: pick-up year {int(years[i])} is outside "
            f"the years the model can price ({y0} to {y1})"
        )
