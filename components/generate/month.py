"""One month of trips: simulate a chunk, format it as the published text, write it."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from components.common import contract

from .parameters import (
    CARD_PAYMENT,
    CHUNK_ROWS,
    DEFECT_RATES,
    DEST_BACKGROUND,
    DEST_HOTSPOT,
    DETOUR_MEAN,
    DETOUR_SIGMA,
    DISPATCH_FEE,
    DISPLACEMENT_MEDIAN_KM,
    DISPLACEMENT_SIGMA,
    EXTRA_MILES_MEAN,
    EXTRA_PASSENGERS,
    FARE_MAX_OBSERVED,
    FARE_MIN_OBSERVED,
    GRID_LAT0,
    GRID_LAT_STEP,
    GRID_LON0,
    GRID_LON_STEP,
    GRID_NLAT,
    GRID_NLON,
    HOTSPOTS,
    KM_PER_DEG_LAT,
    KM_PER_DEG_LON,
    METER_NOISE_SIGMA,
    ORIGIN_BACKGROUND,
    PAYMENTTYPES,
    PROVIDERS,
    SURCHARGE,
    TIP_SHARES,
    TOLL_AMOUNTS,
    TOLL_RATE,
    TRIPTYPES,
    WAIT_GAMMA_SHAPE,
    WAIT_RATE_RANGE,
    WEEKDAY_DEMAND,
    WEEKDAY_HOURLY_DEMAND,
    WEEKEND_HOURLY_DEMAND,
)
from .tables import _choice_table, _fmt_cents, _grid, _take
from .trip_model import expected_fare, speed_table, straight_miles, wait_ratio_table


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
