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
from housing_runtime.errors import UserError, shown
from housing_runtime.model import Predictor, model_path
from housing_runtime.serving.grpc_server import GrpcFrontEnd
from housing_runtime.serving.messages import Model
from housing_runtime.serving.metrics import EVENTS
from housing_runtime.serving.rest import RestAdapter

if TYPE_CHECKING:  # the app imports this module; it needs App only as a type
    from housing_runtime.serving.server import App


def served_variants(artifacts: Path) -> tuple[str, ...]:
    """The variants whose model file is in the folder: all three as `make all` writes them, or
    fewer (a KServe storageUri holding one model). None is one line naming the files expected."""
    try:
        if not artifacts.is_dir():
            raise UserError(
                f"artifacts folder {shown(str(artifacts))} not found; run `make all`, or pass --artifacts DIR "
                "(KServe mounts the storageUri's folder at /mnt/models)"
            )
        found = tuple(v for v in config.MODEL_VARIANTS if (artifacts / config.ONNX_NAMES[v]).is_file())
    except OSError as err:  # a folder that cannot be searched
        raise UserError(f"artifacts folder {shown(str(artifacts))} cannot be read ({err.strerror})") from None
    if not found:
        names = ", ".join(config.ONNX_NAMES[v] for v in config.MODEL_VARIANTS)
        raise UserError(
            f"no model in {shown(str(artifacts))}: expected one or more of {names} beside {config.MANIFEST_NAME} "
            "(run `make all`, or pass --artifacts DIR)"
        )
    return found


def load_models(artifacts: Path, verify: bool) -> dict[str, Model]:
    """Every variant in the folder, checked against the manifest and warmed up with one prediction."""
    models = {}
    for variant in served_variants(artifacts):
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
        self.loader: Loader | None = None  # told once the ports listen

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.grpc is not None and self.started and not self.should_exit:
            await self.grpc.start(self.app.large)
        if self.started and not self.should_exit and self.loader is not None:
            self.loader.listening()

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

    def __init__(
        self,
        artifacts: Path,
        verify: bool,
        protocol: RestAdapter,
        grpc: GrpcFrontEnd | None = None,
        announce: dict | None = None,
    ):
        super().__init__(name="model-loader", daemon=True)
        self.artifacts, self.verify, self.protocol, self.grpc = artifacts, verify, protocol, grpc
        self.announce = announce or {}  # told in the "ready" line, beside the models
        self.server: Server | None = None
        self.error: UserError | None = None
        # The "ready" line is written once both are done, by whichever finishes last.
        self.lock = threading.Lock()
        self.models: list[str] | None = None
        self.ports_open = False

    def run(self) -> None:
        try:
            models = load_models(self.artifacts, self.verify)
            self.protocol.load(models)
            if self.grpc is not None:
                self.grpc.serving_threadsafe()
            with self.lock:
                self.models = list(models)
                self.tell_ready()
        except UserError as err:
            self.error = err
            if self.server is not None:
                self.server.should_exit = True

    def listening(self) -> None:
        """The server's ports are open (from its event loop)."""
        with self.lock:
            self.ports_open = True
            self.tell_ready()

    def tell_ready(self) -> None:
        """Once the models are loaded and the ports open: the one "ready" line an operator
        reads, with which models this folder gave and the server's sizing. Holds ``lock``."""
        stopping = self.server is not None and self.server.should_exit  # a signal came while loading
        if self.models is not None and self.ports_open and not stopping:
            fields = {"models": self.models, "artifacts": str(self.artifacts), **self.announce}
            EVENTS.info("ready", extra={"fields": fields})
