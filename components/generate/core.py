"""Synthetic DC taxi trip files in exactly the published format, with a known fare model.

The real DC open-data files cannot be downloaded on the build machines, so this module
writes ``taxi_YYYY_MM.txt`` files (optionally zipped per year as ``taxi_YYYY.zip``) with
the real header, ``|`` delimiter, ``NULL`` tokens, month-first hour-rounded timestamps,
block-snapped coordinates and the observed defect rates (see DESIGN.md "Data contract").

Fares come from the trip model documented in ``docs/generator.md``. Because the model
is known, the best RMSE any model can reach from the prediction-time features (origin,
destination, pick-up time) is computed exactly over the clean rows and written with
every generation parameter to ``truth.json`` beside the data.

Everything is vectorised (numpy for the simulation, Arrow lookup tables + the Arrow CSV
writer for the text) and generated in chunks of at most ``CHUNK_ROWS`` lines, so memory
does not grow with ``rows``. Each chunk has its own random stream seeded by
``(seed, year, month, chunk)``: the same config gives the same bytes.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from components.common import contract
from components.common.errors import UserError

GENERATOR_VERSION = 1
TRUTH_FILE = "truth.json"
CHUNK_ROWS = 100_000  # lines per chunk: bounds memory
ZIP_COMPRESSLEVEL = 1  # deflate level for --zip (speed over size; any level reads the same)

# --- geometry ------------------------------------------------------------------------

EARTH_RADIUS_KM = 6371.0088
KM_PER_MILE = 1.609344
KM_PER_DEG_LAT = 111.195  # EARTH_RADIUS_KM * pi / 180
# Block grid: ~245 m x ~251 m cells anchored at the south-west corner of the extent.
# Steps are whole multiples of 0.0001 so every grid point is exact with 4 decimals.
GRID_LAT_STEP = 0.0022
GRID_LON_STEP = 0.0029
GRID_LAT0, GRID_LAT_MAX = contract.DC_LAT_RANGE
GRID_LON0, GRID_LON_MAX = contract.DC_LON_RANGE
GRID_NLAT = int(round((GRID_LAT_MAX - GRID_LAT0) / GRID_LAT_STEP, 6)) + 1
GRID_NLON = int(round((GRID_LON_MAX - GRID_LON0) / GRID_LON_STEP, 6)) + 1
_MID_LAT = (GRID_LAT0 + GRID_LAT_MAX) / 2
KM_PER_DEG_LON = KM_PER_DEG_LAT * float(np.cos(np.radians(_MID_LAT)))

CAPITOL = (38.8899, -77.0091)  # origin of DC street numbering (quadrants NW/NE/SW/SE)
DCA = (38.8512, -77.0402)  # Reagan National airport
AIRPORT_RADIUS_KM = 0.6  # AIRPORT = "Y" when either end is this close to DCA
AIRPORT_BLOCKNAME = "RONALD REAGAN WASHINGTON NATIONAL AIRPORT"

# Where trips start and end: (name, lat, lon, sigma_km, origin weight, destination weight).
HOTSPOTS: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("Farragut / K Street", 38.9020, -77.0390, 0.7, 0.16, 0.14),
    ("Dupont Circle", 38.9096, -77.0434, 0.6, 0.10, 0.09),
    ("Georgetown", 38.9055, -77.0630, 0.6, 0.08, 0.08),
    ("Union Station", 38.8973, -77.0063, 0.4, 0.08, 0.08),
    ("Capitol Hill", 38.8867, -76.9995, 0.7, 0.07, 0.07),
    ("Penn Quarter", 38.8990, -77.0219, 0.5, 0.10, 0.10),
    ("U Street", 38.9170, -77.0290, 0.6, 0.07, 0.07),
    ("Adams Morgan", 38.9215, -77.0422, 0.5, 0.05, 0.05),
    ("Foggy Bottom", 38.9000, -77.0500, 0.5, 0.06, 0.06),
    ("Navy Yard", 38.8765, -77.0053, 0.5, 0.04, 0.04),
    ("The Wharf", 38.8790, -77.0230, 0.4, 0.03, 0.03),
    ("Columbia Heights", 38.9282, -77.0326, 0.6, 0.04, 0.04),
    ("Reagan National (DCA)", DCA[0], DCA[1], 0.15, 0.03, 0.04),
    ("Cleveland Park", 38.9345, -77.0580, 0.8, 0.03, 0.04),
)
ORIGIN_BACKGROUND = 0.04  # share of origins uniform over the extent
DEST_HOTSPOT = 0.20  # share of destinations drawn from the hotspots
DEST_BACKGROUND = 0.02  # share of destinations uniform over the extent
DISPLACEMENT_MEDIAN_KM = 1.95  # otherwise: origin + lognormal displacement, uniform direction
DISPLACEMENT_SIGMA = 0.42

# --- the fare model ----------------------------------------------------------------------

DETOUR_MEAN = 1.30  # street distance / straight line, E[D]
DETOUR_SIGMA = 0.15  # D = DETOUR_MEAN * lognormal(-s^2/2, s)
EXTRA_MILES_MEAN = 0.25  # exponential extra street miles (to the door, one-way streets)
FREE_FLOW_MPH = 22.0
WAIT_K = 0.27  # waiting hours = moving hours * WAIT_K * (FREE_FLOW_MPH/speed - 1) * G
WAIT_GAMMA_SHAPE = 1.5  # G ~ Gamma(shape, 1/shape): mean 1
WAIT_RATE_RANGE = (25.0, 35.0)  # $ per waiting hour, uniform per trip
METER_NOISE_SIGMA = 0.12  # M = lognormal(-s^2/2, s) multiplies the metered part
# Hourly traffic speed (mph) for Monday-Thursday and for Saturday/Sunday. Friday is the
# weekday profile FRIDAY_EVENING_FACTOR slower from 15:00 on.
WEEKDAY_SPEED = (
    *(19.0, 20.0, 21.0, 21.0, 20.0, 17.0, 13.0, 9.5, 8.5, 10.0, 11.5, 11.5),
    *(11.0, 11.0, 11.0, 10.5, 9.0, 8.5, 9.5, 11.0, 13.0, 14.5, 16.0, 17.5),
)
WEEKEND_SPEED = (
    *(16.0, 17.0, 18.0, 19.0, 20.0, 20.0, 19.0, 17.0, 16.0, 14.5, 13.0, 12.0),
    *(11.5, 11.5, 11.5, 11.5, 12.0, 12.0, 12.0, 12.5, 13.0, 13.0, 13.5, 14.5),
)
FRIDAY_EVENING_FACTOR = 0.92

# Demand: when trips start (relative weights per weekday and per hour).
WEEKDAY_DEMAND = (0.90, 0.95, 1.00, 1.05, 1.15, 1.15, 0.90)  # Monday..Sunday
WEEKDAY_HOURLY_DEMAND = (
    *(0.35, 0.25, 0.18, 0.10, 0.08, 0.12, 0.30, 0.60, 0.85, 0.80, 0.70, 0.75),
    *(0.85, 0.85, 0.85, 0.90, 0.95, 1.00, 1.00, 0.95, 0.90, 0.85, 0.80, 0.60),
)
WEEKEND_HOURLY_DEMAND = (
    *(0.90, 0.85, 0.75, 0.40, 0.15, 0.10, 0.12, 0.20, 0.30, 0.45, 0.60, 0.70),
    *(0.80, 0.85, 0.85, 0.85, 0.85, 0.85, 0.90, 0.95, 0.95, 1.00, 1.00, 0.95),
)

# --- the other columns -------------------------------------------------------------------

TRIPTYPES = ((1, 0.80), (2, 0.20))  # 1 street hail, 2 dispatched
DISPATCH_FEE = 2.00  # EXTRAFAREAMOUNT for dispatched trips
PROVIDERS = (
    ("Transco", 0.22),
    ("Yellow Cab", 0.18),
    ("DC VIP Cab", 0.12),
    ("Grand Cab", 0.10),
    ("Capitol Cab", 0.10),
    ("Sun Cab", 0.08),
    ("Elite Cab", 0.08),
    ("Hybrid Cab", 0.07),
    ("Checker Cab", 0.05),
)
PAYMENTTYPES = (
    (1, 0.45),
    (2, 0.50),
    (3, 0.01),
    (4, 0.005),
    (5, 0.035),
)  # cash, card, no charge, dispute, unknown
CARD_PAYMENT = 2
TIP_SHARES = ((0.0, 0.15), (0.15, 0.30), (0.18, 0.20), (0.20, 0.25), (0.25, 0.10))  # card tips, share of fare
SURCHARGE = 0.25  # DC passenger surcharge on every trip
EXTRA_PASSENGERS = ((0, 0.82), (1, 0.12), (2, 0.05), (3, 0.01))  # $1.00 each
TOLL_RATE = 0.003
TOLL_AMOUNTS = (1.00, 2.00, 3.50)

# --- defects (observed rates, DESIGN.md) ---------------------------------------------------

DEFECT_RATES = {
    "origin_timestamp_missing": 0.21,
    "destination_timestamp_missing_given_origin_missing": 0.90,
    "destination_timestamp_missing_otherwise": 0.005,
    "origin_coords_missing": 0.140,
    "destination_coords_missing": 0.194,
    "either_coords_missing": 0.246,
    "fare_null": 0.005,
    "fare_below_min": 0.0049,
    "fare_below_min_negative_share": 0.30,
    "fare_below_min_large_negative_share": 0.05,
    "fare_absurd": 0.0002,
    "mileage_null": 0.002,
    "duration_null": 0.002,
    "duplicates": 0.002,
}
FARE_MIN_OBSERVED = -2064.71
FARE_MAX_OBSERVED = 745557.28

# Zip codes: (zip, city, state, centroid lat, centroid lon); a block takes the nearest
# centroid of its state.
ZIPS: tuple[tuple[str, str, str, float, float], ...] = (
    ("20001", "WASHINGTON", "DC", 38.9108, -77.0177),
    ("20002", "WASHINGTON", "DC", 38.9050, -76.9830),
    ("20003", "WASHINGTON", "DC", 38.8820, -76.9950),
    ("20004", "WASHINGTON", "DC", 38.8950, -77.0260),
    ("20005", "WASHINGTON", "DC", 38.9040, -77.0310),
    ("20006", "WASHINGTON", "DC", 38.8980, -77.0410),
    ("20007", "WASHINGTON", "DC", 38.9140, -77.0790),
    ("20008", "WASHINGTON", "DC", 38.9360, -77.0600),
    ("20009", "WASHINGTON", "DC", 38.9190, -77.0380),
    ("20010", "WASHINGTON", "DC", 38.9330, -77.0300),
    ("20011", "WASHINGTON", "DC", 38.9520, -77.0240),
    ("20012", "WASHINGTON", "DC", 38.9770, -77.0300),
    ("20015", "WASHINGTON", "DC", 38.9660, -77.0580),
    ("20016", "WASHINGTON", "DC", 38.9380, -77.0900),
    ("20017", "WASHINGTON", "DC", 38.9370, -76.9920),
    ("20018", "WASHINGTON", "DC", 38.9260, -76.9740),
    ("20019", "WASHINGTON", "DC", 38.8900, -76.9380),
    ("20020", "WASHINGTON", "DC", 38.8600, -76.9800),
    ("20024", "WASHINGTON", "DC", 38.8760, -77.0190),
    ("20032", "WASHINGTON", "DC", 38.8340, -77.0080),
    ("20036", "WASHINGTON", "DC", 38.9080, -77.0420),
    ("20037", "WASHINGTON", "DC", 38.8990, -77.0520),
    ("22201", "ARLINGTON", "VA", 38.8870, -77.0950),
    ("22202", "ARLINGTON", "VA", 38.8560, -77.0520),
    ("22204", "ARLINGTON", "VA", 38.8600, -77.1000),
    ("22209", "ARLINGTON", "VA", 38.8950, -77.0710),
    ("22211", "ARLINGTON", "VA", 38.8800, -77.0700),
    ("22301", "ALEXANDRIA", "VA", 38.8200, -77.0600),
    ("20815", "CHEVY CHASE", "MD", 38.9780, -77.0800),
    ("20910", "SILVER SPRING", "MD", 38.9930, -77.0250),
    ("20912", "TAKOMA PARK", "MD", 38.9820, -76.9950),
    ("20782", "HYATTSVILLE", "MD", 38.9600, -76.9600),
    ("20743", "CAPITOL HEIGHTS", "MD", 38.8800, -76.9150),
    ("20745", "OXON HILL", "MD", 38.8200, -76.9900),
)
# DC is a square rotated 45 degrees (corners N, E, S, W); the Potomac cuts off the
# south-west side. Points west of the river polyline are Virginia.
DC_CORNERS = ((38.9955, -77.0410), (38.8930, -76.9090), (38.7916, -77.0386), (38.9342, -77.1199))
POTOMAC = (
    (38.80, -77.040),
    (38.85, -77.038),
    (38.87, -77.045),
    (38.89, -77.060),
    (38.905, -77.068),
    (38.93, -77.112),
)
LETTER_STREETS = (
    *("C", "D", "E", "F", "G", "H", "I", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W"),
    *("ADAMS", "BRYANT", "CHANNING", "DOUGLAS", "EVARTS", "FRANKLIN", "GIRARD", "HOBART", "IRVING"),
    *("KENYON", "LAMONT", "MONROE", "NEWTON", "OTIS", "QUINCY", "RANDOLPH", "SHEPHERD", "TAYLOR"),
    *("UPSHUR", "VARNUM", "WEBSTER", "ALLISON", "BUCHANAN", "CRITTENDEN", "DECATUR", "EMERSON"),
    *("FARRAGUT", "GALLATIN", "HAMILTON", "INGRAHAM", "JEFFERSON", "KENNEDY", "LONGFELLOW"),
)
OUTSIDE_STREETS = {
    "VA": ("WILSON BLVD", "CLARENDON BLVD", "COLUMBIA PIKE", "GLEBE RD", "ARLINGTON BLVD", "FAIRFAX DR"),
    "MD": ("EASTERN AVE", "SOUTHERN AVE", "WISCONSIN AVE", "CONNECTICUT AVE", "GEORGIA AVE", "MARLBORO PIKE"),
}


@dataclass(frozen=True)
class GenerateConfig:
    out: str  # output directory (created)
    rows: int = 200_000  # total rows across all months
    months: str = "2015-01:2015-06"  # inclusive range YYYY-MM:YYYY-MM (a single "YYYY-MM" also valid)
    seed: int = 0
    zip: bool = False  # write taxi_YYYY.zip archives (members taxi_YYYY_MM.txt) instead of .txt files


@dataclass(frozen=True)
class GenerateResult:
    files: list[Path]  # the files written (txt or zip)
    rows: int
    truth: dict  # contents of truth.json
    seconds: float


# --- config checks -------------------------------------------------------------------------

_MONTH_RE = re.compile(r"(\d{4})-(\d{2})")


def parse_months(spec: str) -> list[tuple[int, int]]:
    """``"2015-01:2015-03"`` -> [(2015, 1), (2015, 2), (2015, 3)]; ``"2015-01"`` -> one month."""
    expected = "expected YYYY-MM or YYYY-MM:YYYY-MM, e.g. 2015-01:2015-06"
    parts = str(spec).strip().split(":")
    if len(parts) not in (1, 2):
        raise UserError(f"--months {spec!r}: {expected}")
    bounds = []
    for part in parts:
        m = _MONTH_RE.fullmatch(part.strip())
        if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
            raise UserError(f"--months {spec!r}: {expected}")
        bounds.append((int(m.group(1)), int(m.group(2))))
    start, end = bounds[0], bounds[-1]
    if end < start:
        raise UserError(f"--months {spec!r}: the range ends before it starts")
    months = []
    y, mo = start
    while (y, mo) <= end:
        months.append((y, mo))
        y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
    return months


def allocate_rows(rows: int, months: list[tuple[int, int]]) -> list[int]:
    """Split ``rows`` over the months in proportion to their days (each month gets >= 1)."""
    if rows < len(months):
        raise UserError(f"--rows {rows}: need at least one row per month ({len(months)} months)")
    days = np.array([calendar.monthrange(y, m)[1] for y, m in months], dtype=np.float64)
    rest = rows - len(months)
    share = rest * days / days.sum()
    alloc = np.floor(share).astype(np.int64)
    remainder = rest - int(alloc.sum())
    alloc[np.argsort(-(share - alloc), kind="stable")[:remainder]] += 1
    return [int(a) + 1 for a in alloc]


def _check(config: GenerateConfig) -> list[tuple[int, int]]:
    if not isinstance(config.rows, int) or config.rows <= 0:
        raise UserError(f"--rows {config.rows!r}: expected a positive integer")
    if not isinstance(config.seed, int) or config.seed < 0:
        raise UserError(f"--seed {config.seed!r}: expected a non-negative integer")
    if not config.out:
        raise UserError("--out: an output directory is required")
    return parse_months(config.months)


# --- the trip model (public so docs and tests can point at it) --------------------------------


@cache
def speed_table() -> np.ndarray:
    """Traffic speed in mph by [weekday (Monday=0), hour]."""
    table = np.empty((7, 24))
    table[0:5] = WEEKDAY_SPEED
    table[4, 15:] *= FRIDAY_EVENING_FACTOR
    table[5:7] = WEEKEND_SPEED
    return np.round(table, 2)


@cache
def wait_ratio_table() -> np.ndarray:
    """Mean waiting hours per moving hour by [weekday, hour]: WAIT_K * (free flow / speed - 1)."""
    return np.round(WAIT_K * np.maximum(FREE_FLOW_MPH / speed_table() - 1.0, 0.0), 4)


def straight_miles(o_lat, o_lon, d_lat, d_lon) -> np.ndarray:
    """Great-circle (haversine) distance in miles."""
    p1, p2 = np.radians(o_lat), np.radians(d_lat)
    dphi, dlam = p2 - p1, np.radians(np.asarray(d_lon) - np.asarray(o_lon))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a)) / KM_PER_MILE


def expected_fare(o_lat, o_lon, d_lat, d_lon, weekday, hour) -> np.ndarray:
    """E[fare | origin, destination, pick-up weekday and hour]: the best possible prediction."""
    miles = straight_miles(o_lat, o_lon, d_lat, d_lon) * DETOUR_MEAN + EXTRA_MILES_MEAN
    rate = sum(WAIT_RATE_RANGE) / 2
    per_mile = contract.PER_MILE + rate * wait_ratio_table()[weekday, hour] / speed_table()[weekday, hour]
    return contract.FLAG_DROP + per_mile * miles


def model_parameters() -> dict:
    """Every parameter of the trip model and the generator, as written to truth.json."""
    return {
        "fare_formula": (
            "miles = straight_miles * D + E; moving_h = miles / speed[wd,h]; "
            "waiting_h = moving_h * wait_ratio[wd,h] * G; "
            "fare = flag_drop + M * (per_mile * miles + waiting_rate * waiting_h), rounded to cents"
        ),
        "expected_fare_formula": (
            "E[fare|x] = flag_drop + (per_mile + mean(waiting_rate) * wait_ratio[wd,h] / speed[wd,h])"
            " * (straight_miles * detour_mean + extra_miles_mean)"
        ),
        "flag_drop": contract.FLAG_DROP,
        "per_mile": contract.PER_MILE,
        "waiting_rate_per_hour": list(WAIT_RATE_RANGE),
        "earth_radius_km": EARTH_RADIUS_KM,
        "km_per_mile": KM_PER_MILE,
        "detour_mean": DETOUR_MEAN,
        "detour_lognormal_sigma": DETOUR_SIGMA,
        "extra_miles_mean": EXTRA_MILES_MEAN,
        "free_flow_mph": FREE_FLOW_MPH,
        "wait_k": WAIT_K,
        "wait_gamma_shape": WAIT_GAMMA_SHAPE,
        "meter_noise_lognormal_sigma": METER_NOISE_SIGMA,
        "speed_mph": speed_table().tolist(),
        "wait_ratio": wait_ratio_table().tolist(),
        "weekday_index": "Monday=0 .. Sunday=6; hour 0..23 of the pick-up",
        "timestamps": "floor to the hour of the exact pick-up / drop-off time",
        "grid": {
            "lat0": GRID_LAT0,
            "lon0": GRID_LON0,
            "lat_step": GRID_LAT_STEP,
            "lon_step": GRID_LON_STEP,
            "nlat": GRID_NLAT,
            "nlon": GRID_NLON,
        },
        "locations": {
            "hotspots": [
                {"name": n, "lat": la, "lon": lo, "sigma_km": s, "origin_weight": wo, "dest_weight": wd}
                for n, la, lo, s, wo, wd in HOTSPOTS
            ],
            "origin_background": ORIGIN_BACKGROUND,
            "dest_hotspot": DEST_HOTSPOT,
            "dest_background": DEST_BACKGROUND,
            "displacement_median_km": DISPLACEMENT_MEDIAN_KM,
            "displacement_lognormal_sigma": DISPLACEMENT_SIGMA,
            "airport": {"lat": DCA[0], "lon": DCA[1], "radius_km": AIRPORT_RADIUS_KM},
        },
        "demand": {
            "weekday": list(WEEKDAY_DEMAND),
            "weekday_hourly": list(WEEKDAY_HOURLY_DEMAND),
            "weekend_hourly": list(WEEKEND_HOURLY_DEMAND),
        },
        "extras": {
            "triptypes": [list(t) for t in TRIPTYPES],
            "dispatch_fee": DISPATCH_FEE,
            "providers": [list(p) for p in PROVIDERS],
            "paymenttypes": [list(p) for p in PAYMENTTYPES],
            "card_tip_shares": [list(t) for t in TIP_SHARES],
            "surcharge": SURCHARGE,
            "extra_passengers_at_1_dollar": [list(e) for e in EXTRA_PASSENGERS],
            "toll_rate": TOLL_RATE,
            "toll_amounts": list(TOLL_AMOUNTS),
            "total": "FAREAMOUNT + GRATUITYAMOUNT + SURCHARGEAMOUNT + EXTRAFAREAMOUNT + TOLLAMOUNT",
        },
        "defect_rates": dict(DEFECT_RATES),
        "fare_defect_range": [FARE_MIN_OBSERVED, FARE_MAX_OBSERVED],
    }


# --- lookup tables: every column is a take() from pre-formatted strings -----------------------


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


# --- one month --------------------------------------------------------------------------------


@dataclass
class _MonthContext:
    year: int
    month: int
    hour_weekday: np.ndarray
    hour_of_day: np.ndarray
    hour_p: np.ndarray  # pick-up probability of each hour
    ts_s: pa.Array  # "MM/DD/YYYY HH:00" for the month's hours and 48 after, then NULL


@cache
def _month_context(year: int, month: int) -> _MonthContext:
    days = calendar.monthrange(year, month)[1]
    first = datetime(year, month, 1)
    n = days * 24
    hours = [first + timedelta(hours=h) for h in range(n + 48)]
    weekday = np.array([h.weekday() for h in hours[:n]])
    hod = np.tile(np.arange(24), days)
    weekday_p = np.asarray(WEEKDAY_DEMAND)[weekday]
    hourly = np.where(
        weekday >= 5, np.asarray(WEEKEND_HOURLY_DEMAND)[hod], np.asarray(WEEKDAY_HOURLY_DEMAND)[hod]
    )
    p = weekday_p * hourly
    return _MonthContext(
        year=year,
        month=month,
        hour_weekday=weekday,
        hour_of_day=hod,
        hour_p=p / p.sum(),
        ts_s=pa.array([h.strftime(contract.TIMESTAMP_FORMAT) for h in hours] + [contract.NULL_TOKEN]),
    )


def _sample_locations(rng: np.random.Generator, n: int, weights: np.ndarray, background: float):
    """Hotspot mixture plus a uniform background; returns (lat, lon) before snapping."""
    lat0, lat1 = contract.DC_LAT_RANGE
    lon0, lon1 = contract.DC_LON_RANGE
    spot = rng.choice(len(HOTSPOTS), size=n, p=weights / weights.sum())
    centers = np.array([(h[1], h[2], h[3]) for h in HOTSPOTS])
    sigma = centers[spot, 2]
    lat = centers[spot, 0] + rng.standard_normal(n) * sigma / KM_PER_DEG_LAT
    lon = centers[spot, 1] + rng.standard_normal(n) * sigma / KM_PER_DEG_LON
    bg = rng.random(n) < background
    lat = np.where(bg, rng.uniform(lat0, lat1, n), lat)
    lon = np.where(bg, rng.uniform(lon0, lon1, n), lon)
    return lat, lon


def _snap(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i = np.clip(np.rint((lat - GRID_LAT0) / GRID_LAT_STEP), 0, GRID_NLAT - 1).astype(np.int64)
    j = np.clip(np.rint((lon - GRID_LON0) / GRID_LON_STEP), 0, GRID_NLON - 1).astype(np.int64)
    return i, j


def _simulate_chunk(rng: np.random.Generator, ctx: _MonthContext, n_lines: int, first_id: int) -> dict:
    """Simulate ``n_lines`` output lines (duplicates included) as integer/index arrays."""
    grid = _grid()
    n_dup = int(round(n_lines * DEFECT_RATES["duplicates"]))
    if n_dup >= n_lines:
        n_dup = 0
    n = n_lines - n_dup

    # Where and when.
    o_lat, o_lon = _sample_locations(rng, n, np.array([h[4] for h in HOTSPOTS]), ORIGIN_BACKGROUND)
    kind = rng.random(n)
    h_lat, h_lon = _sample_locations(
        rng, n, np.array([h[5] for h in HOTSPOTS]), DEST_BACKGROUND / (DEST_HOTSPOT + DEST_BACKGROUND)
    )
    r_km = DISPLACEMENT_MEDIAN_KM * np.exp(DISPLACEMENT_SIGMA * rng.standard_normal(n))
    theta = rng.uniform(0, 2 * np.pi, n)
    near = kind >= DEST_HOTSPOT + DEST_BACKGROUND
    d_lat = np.where(near, o_lat + r_km * np.sin(theta) / KM_PER_DEG_LAT, h_lat)
    d_lon = np.where(near, o_lon + r_km * np.cos(theta) / KM_PER_DEG_LON, h_lon)
    oi, oj = _snap(o_lat, o_lon)
    di, dj = _snap(d_lat, d_lon)
    olat, olon, dlat, dlon = grid["lat"][oi], grid["lon"][oj], grid["lat"][di], grid["lon"][dj]
    hour_idx = rng.choice(len(ctx.hour_p), size=n, p=ctx.hour_p)
    wd, hod = ctx.hour_weekday[hour_idx], ctx.hour_of_day[hour_idx]

    # The fare model (docs/generator.md).
    straight = straight_miles(olat, olon, dlat, dlon)
    detour = DETOUR_MEAN * np.exp(DETOUR_SIGMA * rng.standard_normal(n) - DETOUR_SIGMA**2 / 2)
    miles = straight * detour + rng.exponential(EXTRA_MILES_MEAN, n)
    speed = speed_table()[wd, hod]
    moving_h = miles / speed
    waiting_h = moving_h * wait_ratio_table()[wd, hod] * rng.gamma(WAIT_GAMMA_SHAPE, 1 / WAIT_GAMMA_SHAPE, n)
    rate = rng.uniform(*WAIT_RATE_RANGE, n)
    meter = np.exp(METER_NOISE_SIGMA * rng.standard_normal(n) - METER_NOISE_SIGMA**2 / 2)
    fare = contract.FLAG_DROP + meter * (contract.PER_MILE * miles + rate * waiting_h)
    fare_c = np.rint(fare * 100).astype(np.int64)
    expected = expected_fare(olat, olon, dlat, dlon, wd, hod)

    # Times: exact pick-up minute inside the hour, drop-off after the trip, both floored to the hour.
    duration_min = (moving_h + waiting_h) * 60
    offset_h = np.floor(rng.uniform(0, 60, n) + duration_min).astype(np.int64) // 60
    dest_hour_idx = np.minimum(hour_idx + offset_h, len(ctx.ts_s) - 2)

    # The other columns.
    triptype = rng.choice(len(TRIPTYPES), size=n, p=_choice_table(TRIPTYPES)[1])
    provider = rng.choice(len(PROVIDERS), size=n, p=_choice_table(PROVIDERS)[1])
    payment = rng.choice(len(PAYMENTTYPES), size=n, p=_choice_table(PAYMENTTYPES)[1])
    tip_share = np.array([t for t, _ in TIP_SHARES])[
        rng.choice(len(TIP_SHARES), size=n, p=_choice_table(TIP_SHARES)[1])
    ]
    is_card = np.array([v for v, _ in PAYMENTTYPES])[payment] == CARD_PAYMENT
    tip_c = np.where(is_card, np.rint(fare_c * tip_share), 0).astype(np.int64)
    surcharge_c = np.full(n, int(round(SURCHARGE * 100)), dtype=np.int64)
    passengers = np.array([v for v, _ in EXTRA_PASSENGERS])[
        rng.choice(len(EXTRA_PASSENGERS), size=n, p=_choice_table(EXTRA_PASSENGERS)[1])
    ]
    dispatched = np.array([v for v, _ in TRIPTYPES])[triptype] == 2
    extra_c = (passengers * 100 + np.where(dispatched, int(DISPATCH_FEE * 100), 0)).astype(np.int64)
    toll_c = np.where(
        rng.random(n) < TOLL_RATE,
        (np.array(TOLL_AMOUNTS) * 100).astype(np.int64)[rng.integers(0, len(TOLL_AMOUNTS), n)],
        0,
    )
    mileage_c = np.rint(miles * 100).astype(np.int64)
    duration = np.maximum(np.rint(duration_min), 1).astype(np.int64)

    # Defects, independent of the trip.
    ts_missing = rng.random(n) < DEFECT_RATES["origin_timestamp_missing"]
    u = rng.random(n)
    p_both = (
        DEFECT_RATES["origin_coords_missing"]
        + DEFECT_RATES["destination_coords_missing"]
        - DEFECT_RATES["either_coords_missing"]
    )
    p_o_only = DEFECT_RATES["origin_coords_missing"] - p_both
    p_d_only = DEFECT_RATES["destination_coords_missing"] - p_both
    o_missing = u < p_both + p_o_only
    d_missing = (u < p_both) | ((u >= p_both + p_o_only) & (u < p_both + p_o_only + p_d_only))
    dest_ts_missing = np.where(
        ts_missing,
        rng.random(n) < DEFECT_RATES["destination_timestamp_missing_given_origin_missing"],
        rng.random(n) < DEFECT_RATES["destination_timestamp_missing_otherwise"],
    )
    v = rng.random(n)
    fare_null = v < DEFECT_RATES["fare_null"]
    low = (v >= DEFECT_RATES["fare_null"]) & (v < DEFECT_RATES["fare_null"] + DEFECT_RATES["fare_below_min"])
    absurd = v >= 1 - DEFECT_RATES["fare_absurd"]
    w = rng.random(n)
    neg_share = DEFECT_RATES["fare_below_min_negative_share"]
    large_neg = w < neg_share * DEFECT_RATES["fare_below_min_large_negative_share"]
    low_value = np.where(
        w < neg_share,
        np.where(large_neg, -rng.uniform(100, -FARE_MIN_OBSERVED, n), -fare),  # refunds
        np.where(w < neg_share + (1 - neg_share) * 0.2, 0.0, rng.uniform(0.01, contract.FLAG_DROP - 0.01, n)),
    )
    absurd_value = np.exp(rng.uniform(np.log(contract.FARE_RANGE[1] + 1), np.log(FARE_MAX_OBSERVED), n))
    fare_c = np.where(
        low, np.rint(low_value * 100), np.where(absurd, np.rint(absurd_value * 100), fare_c)
    ).astype(np.int64)
    fare_c = np.where(low, np.minimum(fare_c, int(contract.FLAG_DROP * 100) - 1), fare_c)
    total_c = fare_c + tip_c + surcharge_c + extra_c + toll_c
    mileage_null = rng.random(n) < DEFECT_RATES["mileage_null"]
    duration_null = rng.random(n) < DEFECT_RATES["duration_null"]

    # Clean rows (as the quality step defines them) and the best possible error on them.
    clean = ~ts_missing & ~o_missing & ~d_missing & ~fare_null
    clean &= (fare_c >= round(contract.FARE_RANGE[0] * 100)) & (fare_c <= round(contract.FARE_RANGE[1] * 100))
    clean_fare = fare_c[clean] / 100
    stats = {
        "clean_rows": int(clean.sum()),
        "clean_fare_sum": float(clean_fare.sum()),
        "clean_fare_sumsq": float((clean_fare**2).sum()),
        "clean_sse": float(((clean_fare - expected[clean]) ** 2).sum()),
    }

    # Duplicates: exact copies of random rows at random places.
    src = rng.choice(n, size=n_dup, replace=False) if n_dup else np.empty(0, dtype=np.int64)
    keys = np.concatenate([np.arange(n, dtype=np.float64), rng.uniform(0, n, n_dup)])
    order = np.concatenate([np.arange(n), src])[np.argsort(keys, kind="stable")]

    cols = {
        "objectid": first_id + np.arange(n, dtype=np.int64),
        "triptype": triptype,
        "provider": provider,
        "fare_c": fare_c,
        "fare_null": fare_null,
        "tip_c": tip_c,
        "surcharge_c": surcharge_c,
        "extra_c": extra_c,
        "toll_c": toll_c,
        "total_c": total_c,
        "payment": payment,
        "o_cell": oi * GRID_NLON + oj,
        "d_cell": di * GRID_NLON + dj,
        "oi": oi,
        "oj": oj,
        "di": di,
        "dj": dj,
        "o_missing": o_missing,
        "d_missing": d_missing,
        "mileage_c": mileage_c,
        "mileage_null": mileage_null,
        "duration": duration,
        "duration_null": duration_null,
        "hour_idx": hour_idx,
        "ts_missing": ts_missing,
        "dest_hour_idx": dest_hour_idx,
        "dest_ts_missing": dest_ts_missing,
        "low": low,
        "negative": fare_c < 0,
        "absurd": absurd,
    }
    cols = {k: a[order] for k, a in cols.items()}
    cols["duplicate"] = np.zeros(n_lines, dtype=bool)
    cols["duplicate"][np.argsort(keys, kind="stable") >= n] = True
    cols["stats"] = stats
    cols["n_base"] = n
    return cols


def _format_chunk(c: dict, ctx: _MonthContext) -> pa.Table:
    """The 27 raw columns as Arrow strings, ready for the CSV writer."""
    grid = _grid()
    nul = len(grid["lat_s"]) - 1
    trip_s, _ = _choice_table(TRIPTYPES)
    prov_s, _ = _choice_table(PROVIDERS)
    pay_s, _ = _choice_table(PAYMENTTYPES)
    block_null = len(grid["block_s"]) - 1
    airport = grid["airport"][c["o_cell"]] | grid["airport"][c["d_cell"]]
    ts_null = len(ctx.ts_s) - 1
    columns = {
        "OBJECTID": pc.cast(pa.array(c["objectid"]), pa.string()),
        "TRIPTYPE": _take(trip_s, c["triptype"]),
        "PROVIDERNAME": _take(prov_s, c["provider"]),
        "FAREAMOUNT": _fmt_cents(c["fare_c"], c["fare_null"]),
        "GRATUITYAMOUNT": _fmt_cents(c["tip_c"]),
        "SURCHARGEAMOUNT": _fmt_cents(c["surcharge_c"]),
        "EXTRAFAREAMOUNT": _fmt_cents(c["extra_c"]),
        "TOLLAMOUNT": _fmt_cents(c["toll_c"]),
        "TOTALAMOUNT": _fmt_cents(c["total_c"], c["fare_null"]),
        "PAYMENTTYPE": _take(pay_s, c["payment"]),
        "ORIGINCITY": _take(grid["city_s"], grid["zip_idx"][c["o_cell"]]),
        "ORIGINSTATE": _take(grid["state_s"], grid["zip_idx"][c["o_cell"]]),
        "ORIGINZIP": _take(grid["zip_s"], grid["zip_idx"][c["o_cell"]]),
        "DESTINATIONCITY": _take(grid["city_s"], grid["zip_idx"][c["d_cell"]]),
        "DESTINATIONSTATE": _take(grid["state_s"], grid["zip_idx"][c["d_cell"]]),
        "DESTINATIONZIP": _take(grid["zip_s"], grid["zip_idx"][c["d_cell"]]),
        "MILEAGE": _fmt_cents(c["mileage_c"], c["mileage_null"]),
        "DURATION": pc.if_else(
            pa.array(c["duration_null"]), contract.NULL_TOKEN, pc.cast(pa.array(c["duration"]), pa.string())
        ),
        "ORIGIN_BLOCK_LATITUDE": _take(grid["lat_s"], np.where(c["o_missing"], nul, c["oi"])),
        "ORIGIN_BLOCK_LONGITUDE": _take(
            grid["lon_s"], np.where(c["o_missing"], len(grid["lon_s"]) - 1, c["oj"])
        ),
        "ORIGIN_BLOCKNAME": _take(grid["block_s"], np.where(c["o_missing"], block_null, c["o_cell"])),
        "DESTINATION_BLOCK_LATITUDE": _take(grid["lat_s"], np.where(c["d_missing"], nul, c["di"])),
        "DESTINATION_BLOCK_LONGITUDE": _take(
            grid["lon_s"], np.where(c["d_missing"], len(grid["lon_s"]) - 1, c["dj"])
        ),
        "DESTINATION_BLOCKNAME": _take(grid["block_s"], np.where(c["d_missing"], block_null, c["d_cell"])),
        "AIRPORT": _take(pa.array(["N", "Y"]), airport.astype(np.int64)),
        "ORIGINDATETIME_TR": _take(ctx.ts_s, np.where(c["ts_missing"], ts_null, c["hour_idx"])),
        "DESTINATIONDATETIME_TR": _take(
            ctx.ts_s, np.where(c["dest_ts_missing"], ts_null, c["dest_hour_idx"])
        ),
    }
    assert tuple(columns) == contract.RAW_COLUMNS
    return pa.table(list(columns.values()), names=list(columns))


_WRITE_OPTIONS = pcsv.WriteOptions(include_header=False, delimiter=contract.DELIMITER, quoting_style="none")


def _write_month(sink, rng_seed: list[int], ctx: _MonthContext, rows: int, counts: dict, advance) -> None:
    first_id = counts["_next_id"]
    sink.write((contract.HEADER_LINE + "\n").encode())
    chunk_starts = range(0, rows, CHUNK_ROWS)
    for k, start in enumerate(chunk_starts):
        n_lines = min(CHUNK_ROWS, rows - start)
        rng = np.random.default_rng(np.random.SeedSequence([*rng_seed, k]))
        c = _simulate_chunk(rng, ctx, n_lines, first_id)
        first_id += c["n_base"]
        _count(counts, c)
        pcsv.write_csv(_format_chunk(c, ctx), sink, _WRITE_OPTIONS)
        advance(n_lines)
    counts["_next_id"] = first_id


def _count(counts: dict, c: dict) -> None:
    def add(key, value):
        counts[key] = counts.get(key, 0) + value

    add("rows", len(c["objectid"]))
    add("duplicates", int(c["duplicate"].sum()))
    add("origin_timestamp_missing", int(c["ts_missing"].sum()))
    add("destination_timestamp_missing", int(c["dest_ts_missing"].sum()))
    add("origin_coords_missing", int(c["o_missing"].sum()))
    add("destination_coords_missing", int(c["d_missing"].sum()))
    add("either_coords_missing", int((c["o_missing"] | c["d_missing"]).sum()))
    add("fare_null", int(c["fare_null"].sum()))
    below = ~c["fare_null"] & (c["fare_c"] < round(contract.FLAG_DROP * 100))
    add("fare_below_min", int(below.sum()))
    add("fare_negative", int((~c["fare_null"] & (c["fare_c"] < 0)).sum()))
    add("fare_above_max", int((~c["fare_null"] & (c["fare_c"] > round(contract.FARE_RANGE[1] * 100))).sum()))
    add("mileage_null", int(c["mileage_null"].sum()))
    add("duration_null", int(c["duration_null"].sum()))
    valid = ~c["fare_null"]
    if valid.any():
        counts["fare_min"] = min(counts.get("fare_min", np.inf), float(c["fare_c"][valid].min()) / 100)
        counts["fare_max"] = max(counts.get("fare_max", -np.inf), float(c["fare_c"][valid].max()) / 100)
    for key, value in c["stats"].items():
        add(key, value)


# --- the entry point ------------------------------------------------------------------------


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("generate"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task("rows", total=total)

    def __enter__(self):
        if self._bar:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self._bar:
            self._bar.advance(self._task, n)


def month_file_name(year: int, month: int) -> str:
    return f"taxi_{year:04d}_{month:02d}.txt"


def year_archive_name(year: int) -> str:
    return f"taxi_{year:04d}.zip"


def generate(config: GenerateConfig, progress: bool = False) -> GenerateResult:
    """Write the trip files and truth.json into ``config.out``; return what was written."""
    started = time.perf_counter()
    months = _check(config)
    per_month = allocate_rows(config.rows, months)
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {config.out}: cannot create the directory: {err.strerror}") from err
    _refuse_stale_outputs(out, config, months)

    # An old truth.json would make a failed run look complete: it goes first, comes back last.
    (out / TRUTH_FILE).unlink(missing_ok=True)
    counts: dict = {"_next_id": 1}
    plan = [(y, m, rows) for (y, m), rows in zip(months, per_month, strict=True)]
    written: list[Path] = []
    try:
        with _Progress(progress, config.rows) as bar:
            write = _write_zips if config.zip else _write_txts
            file_rows = write(out, plan, config.seed, counts, bar.advance, written)
        truth = _truth(config, months, file_rows, counts)
        _partial(out / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n")
        _commit(out / TRUTH_FILE)
    finally:
        for path in [*written, out / TRUTH_FILE]:
            _partial(path).unlink(missing_ok=True)
    return GenerateResult(files=written, rows=config.rows, truth=truth, seconds=time.perf_counter() - started)


def _output_names(config: GenerateConfig, months) -> set[str]:
    """The file names this run writes into --out (truth.json included)."""
    if config.zip:
        names = {year_archive_name(y) for y in {y for y, _ in months}}
    else:
        names = {month_file_name(y, m) for y, m in months}
    return names | {TRUTH_FILE}


def _refuse_stale_outputs(out: Path, config: GenerateConfig, months) -> None:
    """Refuse an --out holding taxi_* files this run would not overwrite: ingest would read them too."""
    expected = _output_names(config, months)
    try:
        present = sorted(p.name for p in out.iterdir() if p.name.startswith("taxi_"))
    except OSError as err:
        raise UserError(f"--out {config.out}: cannot list the directory: {err.strerror}") from err
    stale = [name for name in present if name not in expected]
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        raise UserError(
            f"--out {config.out} already holds {', '.join(stale[:3])}{more}, which this run would not "
            "overwrite (ingest would read both); use an empty directory or remove them"
        )


def _write_txts(out: Path, plan, seed: int, counts: dict, advance, written: list[Path]) -> list[dict]:
    """One taxi_YYYY_MM.txt per month (written as a hidden .partial, renamed when complete)."""
    file_rows = []
    for year, month, rows in plan:
        final = out / month_file_name(year, month)
        written.append(final)
        with open(_partial(final), "wb") as sink:
            _write_month(sink, [seed, year, month], _month_context(year, month), rows, counts, advance)
        _commit(final)
        file_rows.append({"file": final.name, "rows": rows})
    return file_rows


def _write_zips(out: Path, plan, seed: int, counts: dict, advance, written: list[Path]) -> list[dict]:
    """One taxi_YYYY.zip per year; each month streams straight into its member (no .txt on disk)."""
    file_rows = []
    for year in sorted({y for y, _, _ in plan}):
        final = out / year_archive_name(year)
        written.append(final)
        with zipfile.ZipFile(
            _partial(final), "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_COMPRESSLEVEL
        ) as archive:
            for _, month, rows in (p for p in plan if p[0] == year):
                name = month_file_name(year, month)
                # Fixed timestamp so the archive bytes depend on the config only.
                info = zipfile.ZipInfo(name, date_time=(year, month, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                # A hand-made ZipInfo would otherwise deflate at level 6 (public name from Python 3.13).
                level_attr = "compress_level" if hasattr(info, "compress_level") else "_compresslevel"
                setattr(info, level_attr, ZIP_COMPRESSLEVEL)
                with archive.open(info, "w", force_zip64=True) as sink:
                    _write_month(
                        sink, [seed, year, month], _month_context(year, month), rows, counts, advance
                    )
                file_rows.append({"file": f"{final.name}!{name}", "rows": rows})
        _commit(final)
    return file_rows


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _commit(path: Path) -> None:
    os.replace(_partial(path), path)


def _num(x: float) -> float | None:
    """Rounded for truth.json; None (JSON null) where undefined (no clean rows)."""
    return round(float(x), 6) if np.isfinite(x) else None


def _truth(config: GenerateConfig, months, file_rows: list[dict], counts: dict) -> dict:
    rows = counts["rows"]
    n = counts["clean_rows"]
    mean = counts["clean_fare_sum"] / n if n else float("nan")
    var = counts["clean_fare_sumsq"] / n - mean**2 if n else float("nan")
    std = float(np.sqrt(max(var, 0.0)))
    best = float(np.sqrt(counts["clean_sse"] / n)) if n else float("nan")
    defects = {
        k: counts[k]
        for k in (
            "duplicates",
            "origin_timestamp_missing",
            "destination_timestamp_missing",
            "origin_coords_missing",
            "destination_coords_missing",
            "either_coords_missing",
            "fare_null",
            "fare_below_min",
            "fare_negative",
            "fare_above_max",
            "mileage_null",
            "duration_null",
        )
    }
    return {
        "generator": "fareflow.generate",
        "version": GENERATOR_VERSION,
        "config": asdict(config),
        "months": [f"{y:04d}-{m:02d}" for y, m in months],
        "files": file_rows,
        "rows": rows,
        "defects": defects,
        "defect_rates_observed": {k: round(v / rows, 6) for k, v in defects.items()},
        "fare_min": counts.get("fare_min"),
        "fare_max": counts.get("fare_max"),
        "clean": {
            "definition": (
                f"fare in [{contract.FARE_RANGE[0]}, {contract.FARE_RANGE[1]}], no missing origin timestamp, "
                "fare or coordinates, exact duplicate rows removed"
            ),
            "rows": n,
            "fare_mean": _num(mean),
            "fare_std": _num(std),
            "mean_baseline_rmse": _num(std),
        },
        "best_rmse": _num(best),
        "best_rmse_definition": "RMSE of E[fare | origin, destination, pick-up time] against the fare, clean rows",
        "best_r2": _num(1 - best**2 / var) if n and var > 0 else None,
        "model": model_parameters(),
    }
