""":class:`FareModel`, the ``kserve.Model`` over :class:`~.core.FarePredictor`.

It answers the three payloads KServe's data plane hands a model -- v1 ``instances``, a REST
:class:`~.protocol.V2Request` (decoded by fareflow's route) and a gRPC ``InferRequest`` -- with
the same fares, turning a ``UserError`` into KServe's ``InvalidInput`` (400 / INVALID_ARGUMENT).
Small requests run on the event loop, big ones in a worker thread. See docs/serve.md.
"""

from __future__ import annotations

import asyncio
import uuid

from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.logging import logger
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from components.common import features, model_dir
from components.common.errors import UserError

from . import protocol
from .core import DEFAULT_AREA_MARGIN_DEG, DEFAULT_YEAR_MARGIN, FIELD_NAMES, FarePredictor, limit_threads

OUTPUT_NAME = protocol.OUTPUT_NAME
OUTPUT_DATATYPE = protocol.OUTPUT_DATATYPE
# Requests up to this many trips run on the event loop (a thread hop costs more than their
# forward pass); bigger ones in a worker thread, so health probes are answered meanwhile.
INLINE_ROWS = 256


class FareModel(Model):
    """A fareflow fare model served under ``name`` (the InferenceService name)."""

    def __init__(
        self,
        name: str,
        model_dir: str,
        *,
        area_margin_deg: float = DEFAULT_AREA_MARGIN_DEG,
        year_margin: int = DEFAULT_YEAR_MARGIN,
        torch_threads: int | None = None,
    ) -> None:
        super().__init__(name)
        self.torch_threads = torch_threads
        self.model_dir = model_dir
        self.area_margin_deg = area_margin_deg
        self.year_margin = year_margin
        self.predictor: FarePredictor | None = None

    @property
    def version(self) -> str | None:
        """The loaded model's ``model_version`` (None before loading, or for a model without one)."""
        return model_dir.model_version(self.predictor.model.meta) if self.predictor else None

    def load(self) -> bool:
        """Read the model directory (local, or ``s3://`` copied under /tmp); ``UserError`` if unusable."""
        self.predictor = FarePredictor.load(
            self.model_dir, area_margin_deg=self.area_margin_deg, year_margin=self.year_margin
        )
        threads = limit_threads(self.torch_threads)
        area = self.predictor.area
        logger.info(
            "model %s: %s (version %s); serves %s (from %s); %d torch thread(s)",
            self.name,
            self.model_dir,
            self.version or "unversioned",
            area.describe(),
            area.source,
            threads,
        )
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
        """v1 instances (a list) -> ``{"predictions": [...]}``; a REST :class:`protocol.V2Request`
        -> the fares (a list); a gRPC ``InferRequest`` -> an ``InferResponse``."""
        if self.predictor is None:  # load() not called (kserve routes requests to ready models only)
            raise ModelNotReady(self.name)
        try:
            if isinstance(payload, InferRequest):
                tensors = [_tensor_of(t) for t in payload.inputs]
                fares = await self._run(self._fares_v2, tensors, _rows(tensors))
                return self._infer_response(payload, fares)
            if isinstance(payload, protocol.V2Request):
                return await self._run(self._fares_v2, payload.inputs, _rows(payload.inputs))
            rows = len(payload) if isinstance(payload, list) else 0
            return {"predictions": await self._run(self.predictor.predict_records, payload, rows)}
        except UserError as err:
            raise InvalidInput(str(err)) from None

    @staticmethod
    async def _run(fn, arg, rows: int):
        if rows <= INLINE_ROWS:
            return fn(arg)
        return await asyncio.to_thread(fn, arg)

    def _fares_v2(self, tensors: list[protocol.Tensor]) -> list[float]:
        return self.predictor.predict_columns(protocol.columns_from_tensors(tensors)).tolist()

    def _infer_response(self, request: InferRequest, fares: list[float]) -> InferResponse:
        for out in request.request_outputs or []:
            if out.name != OUTPUT_NAME:
                raise InvalidInput(f"unknown output {out.name!r}; this model answers {OUTPUT_NAME!r}")
        # A list, not an ndarray: kserve 0.21's InferResponse.to_grpc tests `infer_output.data` for
        # truth when the request came as raw (binary) gRPC tensors, which fails for arrays of n > 1.
        output = InferOutput(name=OUTPUT_NAME, shape=[len(fares)], datatype=OUTPUT_DATATYPE, data=fares)
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),  # the v2 response needs an id
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )


def _rows(tensors: list[protocol.Tensor]) -> int:
    return max((t.shape[0] for t in tensors if t.shape and isinstance(t.shape[0], int)), default=0)


def _tensor_of(tensor) -> protocol.Tensor:
    """A KServe ``InferInput`` (from gRPC: contents or raw_input_contents) as a protocol tensor."""
    raw = getattr(tensor, "_raw_data", None)  # set by InferRequest for raw_input_contents
    data = None if raw is not None else tensor.data
    if raw is None and not isinstance(data, list):
        data = list(data) if data is not None else []
    return protocol.Tensor(tensor.name, tensor.datatype, list(tensor.shape), data=data, raw=raw)
