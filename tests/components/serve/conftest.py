"""A small but real fare model directory, trained here (no train component needed).

Trips are drawn over DC's extent with a known fare: the flag drop plus the per-mile tariff
on a road distance 1.3 times the great-circle one, and a rush-hour surcharge. An MLP of the
serving architecture is fitted with AdamW on the features ``components.common.features``
makes, and written with ``components.common.model_dir.save`` -- so the server loads exactly what
training writes, and its answers can be checked against the formula.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.common import contract, features

KM_PER_MILE = 1.609344
ROAD_FACTOR = 1.3
RUSH_SURCHARGE = 1.5
TRAIN_ROWS = 4000
TRAIN_STEPS = 400


def is_rush(hour) -> np.ndarray:
    hour = np.asarray(hour)
    return ((hour >= 7) & (hour <= 9)) | ((hour >= 16) & (hour <= 18))


def true_fare(distance_km, hour) -> np.ndarray:
    miles = ROAD_FACTOR * np.asarray(distance_km, dtype=np.float64) / KM_PER_MILE
    return contract.FLAG_DROP + contract.PER_MILE * miles + RUSH_SURCHARGE * is_rush(hour)


def synthetic_columns(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    (lat_lo, lat_hi), (lon_lo, lon_hi) = contract.DC_LAT_RANGE, contract.DC_LON_RANGE
    cols = {
        "origin_lat": rng.uniform(lat_lo, lat_hi, rows),
        "origin_lon": rng.uniform(lon_lo, lon_hi, rows),
        "dest_lat": rng.uniform(lat_lo, lat_hi, rows),
        "dest_lon": rng.uniform(lon_lo, lon_hi, rows),
        "year": rng.integers(2015, 2020, rows).astype(np.float64),
        "month": rng.integers(1, 13, rows).astype(np.float64),
        "weekday": rng.integers(0, 7, rows).astype(np.float64),
        "hour": rng.integers(0, 24, rows).astype(np.float64),
    }
    cols["distance_km"] = features.haversine_km(
        cols["origin_lat"], cols["origin_lon"], cols["dest_lat"], cols["dest_lon"]
    )
    return cols


def train_model_dir(directory: Path, rows: int = TRAIN_ROWS, steps: int = TRAIN_STEPS, seed: int = 0) -> Path:
    import torch

    from components.common import model_dir as fare_model

    torch.manual_seed(seed)
    cols = synthetic_columns(rows, seed)
    fare = true_fare(cols["distance_km"], cols["hour"])
    fare += np.random.default_rng(seed + 1).normal(0.0, 0.3, rows)
    spec = features.FeatureSpec.fit(cols)
    x = torch.from_numpy(features.encode(cols, spec))
    y = torch.from_numpy(fare.astype(np.float32)).unsqueeze(1)
    arch = fare_model.Architecture(hidden=(32, 16))
    module = fare_model.build(arch)
    with torch.no_grad():
        module[-1].bias.fill_(float(fare.mean()))  # start at the mean fare
    optimizer = torch.optim.AdamW(module.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(module(x), y)
        loss.backward()
        optimizer.step()
    module.eval()
    lat = np.concatenate([cols["origin_lat"], cols["dest_lat"]])
    lon = np.concatenate([cols["origin_lon"], cols["dest_lon"]])
    extent = {  # what components.train.stats.training_extent records
        "lat": [float(lat.min()), float(lat.max())],
        "lon": [float(lon.min()), float(lon.max())],
        "year": [int(cols["year"].min()), int(cols["year"].max())],
    }
    return fare_model.save(
        directory, module, spec, arch, metrics={"train_rmse": float(loss.detach().sqrt())}, extent=extent
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A trained fareflow model directory (model.json, model.pt, model.npz)."""
    return train_model_dir(tmp_path_factory.mktemp("serve") / "model")


MAX_REQUEST_BYTES = 1 << 20  # small, so the 413 / RESOURCE_EXHAUSTED cases stay small
BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory):
    """One server for the session's HTTP/gRPC tests (limits small so refusals stay cheap)."""
    from .harness import running_server

    log = tmp_path_factory.mktemp("server") / "server.log"
    flags = (f"--max-request-bytes={MAX_REQUEST_BYTES}", f"--body-timeout-s={BODY_TIMEOUT_S}")
    with running_server(model_dir, log, *flags) as server:
        yield server


@pytest.fixture(scope="session")
def quiet_server(model_dir: Path, tmp_path_factory):
    """The same server without request logging: the prediction routes take the fast lane
    (components.serve.fast_lane), so the corpus runs against both ways in."""
    from .harness import running_server

    log = tmp_path_factory.mktemp("quiet-server") / "server.log"
    flags = (f"--max-request-bytes={MAX_REQUEST_BYTES}", f"--body-timeout-s={BODY_TIMEOUT_S}")
    with running_server(model_dir, log, *flags, "--request-logging=false") as server:
        yield server
