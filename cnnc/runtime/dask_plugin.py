"""The Dask worker plugin that installs a compiled network on every worker (cnnc.runtime.distributed).

Imported only where Dask is: `client.register_plugin(InstallNetwork(payload))` sends the pickled
payload (generated code, IR, parameters) once to each worker, and again only to a worker that
joins later (one restarted after a crash, say); its `setup` rebuilds the CompiledNetwork once
per worker process, and the partition tasks then carry only the payload's token.
"""
from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .distributed import NetworkPayload, forget_network, install_network


class InstallNetwork(WorkerPlugin):
    def __init__(self, payload: NetworkPayload):
        self.payload = payload
        self.name = f"cnnc-network-{payload.token[:16]}"  # one plugin per network

    def setup(self, worker: Any) -> None:
        install_network(self.payload)

    def teardown(self, worker: Any) -> None:
        forget_network(self.payload.token)
