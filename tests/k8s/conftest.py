"""A Kubernetes API test server over real HTTP (kmock's emulator) for the client tests.

kmock is asyncio-based and the official client is synchronous, so the server runs its own event
loop in a thread; tests reach it through a kubeconfig file, exactly like a user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

NAMESPACE = "ml"


def _emulator_class() -> Any:
    import kmock

    class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
        """kmock's emulator, plus the uid the API server gives every object it creates (owner
        references name their owner by it)."""

        async def _serve_create(self, request: Any) -> Any:
            raw = await super()._serve_create(request)
            meta = raw.get("metadata", {})
            if not meta.get("uid"):
                key = (request.resource, request.namespace or meta.get("namespace"),
                       meta.get("name"))
                self.objects[key].patch({"metadata": {"uid": str(uuid.uuid4())}})
                raw = self.objects[key].raw
            return raw

    return Emulator


def api_server_emulator() -> Any:
    """A new emulator (its class is built on first use: kmock is imported lazily)."""
    return _emulator_class()()


class KubeServer:
    """kmock's KubernetesEmulator listening on 127.0.0.1 in a background thread."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("kmock server did not start")

    async def _serve(self) -> None:
        import kmock

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with api_server_emulator() as handler, kmock.Server(handler) as server:
            self.kmock = handler
            self.url = str(server.url).rstrip("/")
            # Core resources the client lists before anything of theirs exists.
            handler.resources["v1/pods"] = {}
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # ---- helpers for tests ------------------------------------------------------------

    def objects(self, plural: str, group_version: str = "v1") -> dict[str, dict[str, Any]]:
        """Live (not deleted) stored objects of one resource, by name."""
        import kmock

        res = kmock.resource(f"{group_version}/{plural}")
        return {name: dict(obj.raw) for (r, _ns, name), obj in self.kmock.objects.items()
                if r == res and not obj.deleted}

    def put(self, plural: str, obj: dict[str, Any], group_version: str = "v1") -> None:
        """Store (or replace) an object as if a controller had written it."""
        import kmock

        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("namespace", NAMESPACE)
        self.kmock.objects[kmock.resource(f"{group_version}/{plural}"), NAMESPACE, name] = obj

    def remove(self, plural: str, name: str, group_version: str = "v1") -> None:
        """Remove an object, as its controller or the garbage collector would."""
        import kmock

        with contextlib.suppress(KeyError):
            del self.kmock.objects[kmock.resource(f"{group_version}/{plural}"), NAMESPACE, name]

    def requests(self) -> list[Any]:
        """Every request the server received, in order."""
        return list(self.kmock)


@pytest.fixture()
def kube_server() -> Iterator[KubeServer]:
    server = KubeServer()
    yield server
    server.close()


@pytest.fixture()
def kube(kube_server: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KubeServer:
    """A fresh emulator and a kubeconfig (context namespace `ml`) pointing at it."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": kube_server.url}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "tester",
                                                   "namespace": NAMESPACE}}],
        "current-context": "test",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setenv("RLAUNCH_STATE_DIR", str(tmp_path / "state"))
    return kube_server


def serve_log(kube: KubeServer, pod_name: str, *chunks: Any) -> None:
    """Serve a pod's log as the API server does: text/plain, chunks streamed in order."""
    import kmock

    path = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod_name}/log"
    kube.kmock[f"get {path}"] << kmock.headers({"Content-Type": "text/plain"}) << (
        chunks[0] if len(chunks) == 1 else tuple(chunks))
