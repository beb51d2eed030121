"""The trip model behind the fares: speeds by hour, waiting, expected fare (docs/generator.md)."""

from __future__ import annotations

from functools import cache

import numpy as np

from components.common import contract
from components.common.features import EARTH_RADIUS_KM, haversine_km

from .parameters import (
    AIRPORT_RADIUS_KM,
    DCA,
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
    FREE_FLOW_MPH,
    FRIDAY_EVENING_FACTOR,
    GRID_LAT0,
    GRID_LAT_STEP,
    GRID_LON0,
    GRID_LON_STEP,
    GRID_NLAT,
    GRID_NLON,
    HOTSPOTS,
    KM_PER_MILE,
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
    WAIT_K,
    WAIT_RATE_RANGE,
    WEEKDAY_DEMAND,
    WEEKDAY_HOURLY_DEMAND,
    WEEKDAY_SPEED,
    WEEKEND_HOURLY_DEMAND,
    WEEKEND_SPEED,
)


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
    return haversine_km(o_lat, o_lon, d_lat, d_lon) / KM_PER_MILE


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
