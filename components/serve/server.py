"""The KServe custom predictor: :class:`FareModel` (a ``kserve.Model``) over :mod:`components.serve.core`.

KServe's ModelServer decodes a v1 ``POST /v1/models/NAME:predict`` body into a ``dict`` and a
v2 ``POST /v2/models/NAME/infer`` (REST or gRPC) into an ``InferRequest``; :meth:`FareModel.predict`
answers the first with ``{"predictions": [fare, ...]}`` and the second with an ``InferResponse``
holding one FP64 output tensor ``fare`` of shape ``[n]``. A bad request raises
``kserve.errors.InvalidInput``, which the REST server turns into HTTP 400 ``{"error": message}``.

This is the only module that imports kserve.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from components.common import features
from components.common.errors import UserError

from .core import ACCEPTED_NAMES, FIELD_NAMES, FarePredictor, limit_threads

OUTPUT_NAME = "fare"
OUTPUT_DATATYPE = "FP64"


def _tensor_values(tensor) -> np.ndarray:
    """The values of one v2 input tensor as a 1-D array (shape ``[n]`` or ``[n, 1]``)."""
    shape = list(tensor.shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise UserError(f"input {tensor.name}: expected shape [n] (one value per trip), got {shape}")
    try:
        # JSON data (a list), gRPC contents or binary (raw) data alike; reshaped to `shape`.
        values = tensor.as_numpy()
    except (ValueError, TypeError, InvalidInput) as err:
        raise UserError(
            f"input {tensor.name}: {tensor.datatype} data does not fit shape {shape}: {' '.join(str(err).split())}"
        ) from None
    return values.reshape(-1)


class FareModel(Model):
    """A fareflow fare model served under ``name`` (the InferenceService name)."""

    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.predictor: FarePredictor | None = None

    def load(self) -> bool:
        """Read the model directory (local, or ``s3://`` copied under /tmp); ``UserError`` if unusable."""
        self.predictor = FarePredictor.load(self.model_dir)
        limit_threads()
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [
            {"name": name, "datatype": "BYTES" if name == features.REQUEST_TIME else "FP64", "shape": [-1]}
            for name in FIELD_NAMES
        ]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT_NAME, "datatype": OUTPUT_DATATYPE, "shape": [-1]}]

    async def predict(self, payload, headers=None, response_headers=None):
        if self.predictor is None:  # load() not called (kserve routes requests to ready models only)
            raise ModelNotReady(self.name)
        # In a worker thread: kserve awaits predict on its event loop, which also answers the
        # health probes and other requests while the model runs.
        handler = self._predict_v2 if isinstance(payload, InferRequest) else self._predict_v1
        try:
            return await asyncio.to_thread(handler, payload)
        except UserError as err:
            raise InvalidInput(str(err)) from None

    def _predict_v1(self, payload) -> dict:
        if isinstance(payload, bytes | bytearray | str):  # a body sent without Content-Type: JSON
            try:
                payload = json.loads(payload)
            except ValueError:
                raise UserError('expected a JSON body {"instances": [trip, ...]}') from None
        if not isinstance(payload, dict) or "instances" not in payload:
            raise UserError('expected a JSON object {"instances": [trip, ...]}')
        return {"predictions": self.predictor.predict_records(payload["instances"])}

    def _predict_v2(self, request: InferRequest) -> InferResponse:
        names = [tensor.name for tensor in request.inputs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UserError(f"input(s) {', '.join(repeated)} given more than once")
        unknown = sorted(n for n in names if n not in ACCEPTED_NAMES)
        if unknown:  # before decoding, so an odd tensor's data cannot mask the real problem
            raise UserError(
                f"unknown input(s) {', '.join(unknown)}; expected one per field: {', '.join(FIELD_NAMES)}"
            )
        fares = self.predictor.predict_columns({t.name: _tensor_values(t) for t in request.inputs})
        # A list, not an ndarray: kserve 0.21's InferResponse.to_grpc tests `infer_output.data` for
        # truth when the request came as raw (binary) gRPC tensors, which fails for arrays of n > 1.
        output = InferOutput(
            name=OUTPUT_NAME, shape=[len(fares)], datatype=OUTPUT_DATATYPE, data=fares.tolist()
        )
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),  # the v2 response needs an id
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )
