"""The server's start and stop: the models loaded and warmed beside the serving loop (readiness
answers 503 until then), and the graceful stop on a shutdown signal. What uvicorn's connections
must do besides (the header timeout, header limits) is ``h11_connection``'s."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import uvicorn

from housing_runtime import config, integrity
from housing_runtime.errors import UserError
from housing_runtime.model import Predictor, model_path
from housing_runtime.serving.grpc_server import GrpcFrontEnd
from housing_runtime.serving.messages import Model
from housing_runtime.serving.rest import RestAdapter

if TYPE_CHECKING:  # the app imports this module; it needs App only as a type
    from housing_runtime.serving.server import App


def load_models(artifacts: Path, verify: bool) -> dict[str, Model]:
    """Every variant, checked against the manifest and warmed up with one prediction."""
    models = {}
    for variant in config.MODEL_VARIANTS:
        path = model_path(artifacts, variant)
        if verify:
            integrity.check_file(artifacts / config.MANIFEST_NAME, path)
        predictor = Predictor(path)
        predictor.predict(np.zeros((1, config.N_FEATURES), np.float32))
        models[variant] = Model(variant, predictor)
    return models


class Server(uvicorn.Server):
    """uvicorn's server, with the gRPC front end (when there is one) started and stopped beside
    HTTP in the same event loop, readiness false from the first shutdown signal, bodies still
    arriving then refused (503), and gRPC calls in flight drained within ``grace`` seconds."""

    def __init__(
        self, config_: uvicorn.Config, protocol: RestAdapter, app: App, grpc: GrpcFrontEnd | None, grace: float
    ):
        super().__init__(config_)
        self.protocol, self.app, self.grpc, self.grace = protocol, app, grpc, grace

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.grpc is not None and self.started and not self.should_exit:
            await self.grpc.start(self.app.large)

    async def shutdown(self, sockets=None) -> None:
        if self.grpc is not None:
            self.grpc.begin_stop(self.grace)  # both drain at once
        await super().shutdown(sockets)
        if self.grpc is not None:
            await self.grpc.stopped_within(self.grace)

    def handle_exit(self, sig, frame) -> None:
        self.protocol.stopping = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop yet: nothing is in flight
            pass
        else:
            loop.call_soon_threadsafe(self.app.begin_stop)
            if self.grpc is not None:
                loop.call_soon_threadsafe(self.grpc.begin_stop, self.grace)
        super().handle_exit(sig, frame)


class Loader(threading.Thread):
    """Loads the models beside the serving loop: readiness is 503 until it is done. A bad
    artifact is kept as ``error`` and stops the server, whose caller then reports it."""

    def __init__(self, artifacts: Path, verify: bool, protocol: RestAdapter, grpc: GrpcFrontEnd | None = None):
        super().__init__(name="model-loader", daemon=True)
        self.artifacts, self.verify, self.protocol, self.grpc = artifacts, verify, protocol, grpc
        self.server: Server | None = None
        self.error: UserError | None = None

    def run(self) -> None:
        try:
            self.protocol.load(load_models(self.artifacts, self.verify))
            if self.grpc is not None:
                self.grpc.serving_threadsafe()
        except UserError as err:
            self.error = err
            if self.server is not None:
                self.server.should_exit = True
