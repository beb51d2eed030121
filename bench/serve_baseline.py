"""What a user writes instead of the fareflow server: FastAPI + uvicorn, v1 only.

The project's encoder (``components.common.features``) and model directory loader, one torch
thread, pydantic models for the body as the FastAPI tutorial teaches, a sync endpoint (FastAPI
runs it in its thread pool). No access log (as the fareflow server is run in the bench).

    python -m bench.serve_baseline --model-dir DIR --port 8080
"""

from __future__ import annotations

import argparse

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from components.common import features
from components.common import model_dir as fare_model


class Trip(BaseModel):
    ORIGIN_BLOCK_LATITUDE: float
    ORIGIN_BLOCK_LONGITUDE: float
    DESTINATION_BLOCK_LATITUDE: float
    DESTINATION_BLOCK_LONGITUDE: float
    ORIGINDATETIME_TR: str


class PredictRequest(BaseModel):
    instances: list[Trip]


def build_app(model_dir: str) -> FastAPI:
    torch.set_num_threads(1)
    loaded = fare_model.load(model_dir)
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    def predict(name: str, request: PredictRequest) -> dict:
        columns = features.columns_from_records([t.model_dump() for t in request.instances])
        x = torch.from_numpy(features.encode(columns, loaded.spec))
        with torch.inference_mode():
            fares = loaded.module(x).reshape(-1).clamp(*loaded.fare_range)
        return {"predictions": fares.tolist()}

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-dir", required=True)
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    uvicorn.run(
        build_app(args.model_dir), host="127.0.0.1", port=args.port, access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
