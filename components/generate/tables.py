"""Lookup tables: every output column is a ``take()`` from pre-formatted strings."""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.common import contract

from .parameters import (
    _MID_LAT,
    AIRPORT_BLOCKNAME,
    AIRPORT_RADIUS_KM,
    CAPITOL,
    DC_CORNERS,
    DCA,
    GRID_LAT0,
    GRID_LAT_STEP,
    GRID_LON0,
    GRID_LON_STEP,
    GRID_NLAT,
    GRID_NLON,
    KM_PER_DEG_LAT,
    KM_PER_DEG_LON,
    LETTER_STREETS,
    OUTSIDE_STREETS,
    POTOMAC,
    ZIPS,
)


def _grid_values(n: int, start: float, step: float) -> np.ndarray:
    return np.array([float(f"{start + i * step:.4f}") for i in range(n)])


@cache
def _grid() -> dict:
    lat = _grid_values(GRID_NLAT, GRID_LAT0, GRID_LAT_STEP)
    lon = _grid_values(GRID_NLON, GRID_LON0, GRID_LON_STEP)
    lat_s = pa.array([f"{v:.4f}" for v in lat] + [contract.NULL_TOKEN])
    lon_s = pa.array([f"{v:.4f}" for v in lon] + [contract.NULL_TOKEN])
    cell_lat, cell_lon = np.meshgrid(lat, lon, indexing="ij")  # cell = i * NLON + j
    cell_lat, cell_lon = cell_lat.ravel(), cell_lon.ravel()
    state = _state_of(cell_lat, cell_lon)
    zips = np.array([z[0] for z in ZIPS])
    zlat, zlon, zstate = (np.array([z[k] for z in ZIPS]) for k in (3, 4, 2))
    d2 = ((cell_lat[:, None] - zlat) * KM_PER_DEG_LAT) ** 2 + (
        (cell_lon[:, None] - zlon) * KM_PER_DEG_LON
    ) ** 2
    d2[state[:, None] != zstate[None, :]] = np.inf
    zip_idx = np.argmin(d2, axis=1)
    names = _block_names(cell_lat, cell_lon, state)
    dca_km = np.hypot((cell_lat - DCA[0]) * KM_PER_DEG_LAT, (cell_lon - DCA[1]) * KM_PER_DEG_LON)
    return {
        "lat": lat,
        "lon": lon,
        "lat_s": lat_s,
        "lon_s": lon_s,
        "zip_idx": zip_idx,
        "zip_s": pa.array(list(zips)),
        "city_s": pa.array([z[1] for z in ZIPS]),
        "state_s": pa.array([z[2] for z in ZIPS]),
        "airport": dca_km <= AIRPORT_RADIUS_KM,
        "block_s": pa.array(
            [AIRPORT_BLOCKNAME if a else name for a, name in zip(dca_km <= 0.3, names, strict=True)]
            + [contract.NULL_TOKEN]
        ),
    }


def _state_of(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """DC inside the rotated square and east of the Potomac, VA west of the river, else MD."""
    y, x = (lat - _MID_LAT) * KM_PER_DEG_LAT, lon * KM_PER_DEG_LON
    corners = [((la - _MID_LAT) * KM_PER_DEG_LAT, lo * KM_PER_DEG_LON) for la, lo in DC_CORNERS]
    inside = np.ones(lat.shape, dtype=bool)
    for (y1, x1), (y2, x2) in zip(corners, corners[1:] + corners[:1], strict=True):
        inside &= (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) <= 0  # clockwise: right of each edge
    river_lon = np.interp(lat, [p[0] for p in POTOMAC], [p[1] for p in POTOMAC])
    west = lon < river_lon
    return np.where(west & (lat < POTOMAC[-1][0]), "VA", np.where(inside, "DC", "MD"))


def _ordinal(n: int) -> str:
    suffix = "TH" if 10 <= n % 100 <= 20 else {1: "ST", 2: "ND", 3: "RD"}.get(n % 10, "TH")
    return f"{n}{suffix}"


def _block_names(lat: np.ndarray, lon: np.ndarray, state: np.ndarray) -> list[str]:
    """'1400 - 1499 BLOCK OF K ST NW' style names, one per grid cell (computed once)."""
    names = []
    for k, (la, lo, st) in enumerate(zip(lat, lon, state, strict=True)):
        north = int(abs(la - CAPITOL[0]) / GRID_LAT_STEP * 2)  # lettered streets ~ half a cell apart
        east = int(abs(lo - CAPITOL[1]) / GRID_LON_STEP * 2)
        if st != "DC":
            streets = OUTSIDE_STREETS[str(st)]
            hundred = 100 * (1 + (k * 7) % 40)
            names.append(f"{hundred} - {hundred + 99} BLOCK OF {streets[k % len(streets)]}")
            continue
        quadrant = ("N" if la >= CAPITOL[0] else "S") + ("E" if lo >= CAPITOL[1] else "W")
        if k % 2 == 0:  # along a lettered (east-west) street: hundreds count east/west
            street = LETTER_STREETS[min(north, len(LETTER_STREETS) - 1)]
            hundred = 100 * east
            suffix = "ST"
        else:  # along a numbered (north-south) street: hundreds count north/south
            street = _ordinal(max(east, 1))
            hundred = 100 * north
            suffix = "ST"
        names.append(f"{hundred} - {hundred + 99} BLOCK OF {street} {suffix} {quadrant}")
    return names


@cache
def _cents_table() -> pa.Array:
    """'0.00' .. '999.99' then 'NULL' (index CENTS_MAX + 1); other values take the slow path."""
    whole = np.repeat(np.arange(1000), 100).astype(str)
    frac = np.char.zfill(np.tile(np.arange(100), 1000).astype(str), 2)
    return pa.array(list(np.char.add(np.char.add(whole, "."), frac)) + [contract.NULL_TOKEN])


_CENTS_MAX = 99_999


def _fmt_cents(cents: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Integer hundredths -> 'D.CC' strings ('NULL' where ``null``), vectorised."""
    table = _cents_table()
    out_of_range = (cents < 0) | (cents > _CENTS_MAX)
    idx = np.where(out_of_range, 0, cents)
    if null is not None:
        idx = np.where(null, _CENTS_MAX + 1, idx)
        out_of_range &= ~null
    strings = table.take(pa.array(idx))
    if out_of_range.any():
        odd = cents[out_of_range]
        mag = pa.array(np.abs(odd))
        text = pc.binary_join_element_wise(
            pa.array(np.where(odd < 0, "-", "")),
            pc.cast(pc.divide(mag, 100), pa.string()),
            ".",
            pc.utf8_lpad(
                pc.cast(pc.subtract(mag, pc.multiply(pc.divide(mag, 100), 100)), pa.string()), 2, "0"
            ),
            "",
        )
        strings = pc.replace_with_mask(strings, pa.array(out_of_range), text)
    return strings


def _take(table: pa.Array, idx: np.ndarray) -> pa.Array:
    return table.take(pa.array(idx))


def _choice_table(pairs) -> tuple[pa.Array, np.ndarray]:
    values = pa.array([str(v) for v, _ in pairs])
    p = np.array([w for _, w in pairs], dtype=np.float64)
    return values, p / p.sum()
