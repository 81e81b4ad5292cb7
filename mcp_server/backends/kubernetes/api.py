"""The Kubernetes API as JSON, through the kubernetes client's ``ApiClient``.

The client's configuration, authentication and TLS (kubeconfig or in-cluster service account) are
used as they are; only the typed models are skipped: a fleet of 1,500 nodes as pydantic models
costs more than the API call, and custom resources (Volcano, PyTorchJob, JobSet) are plain JSON
anyway. Calls are synchronous (urllib3), so each runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from mcp_server.backends.base import BackendError, NotFound

Json = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_S = 30


class KubeError(BackendError):
    """The API answered with an error; ``status`` is the HTTP status, ``reason`` the Status reason."""

    def __init__(self, message: str, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeNotFound(KubeError, NotFound):
    pass


class KubeApi:
    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> Json:
        return await self._call("GET", path, query=query)

    async def post(self, path: str, body: Json) -> Json:
        return await self._call("POST", path, body=body, content_type="application/json")

    async def merge_patch(self, path: str, body: Json) -> Json:
        return await self._call("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Json | None = None,
        content_type: str | None = None,
    ) -> Json:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )

        def send() -> tuple[int, bytes]:
            response = self.client.call_api(*request, _request_timeout=REQUEST_TIMEOUT_S)
            response.read()  # type: ignore[no-untyped-call]
            return response.status, response.data or b""

        try:
            status, data = await asyncio.to_thread(send)
        except ApiException as exc:  # raised by the client for transport-level refusals
            raise _error(method, path, exc.status or 0, (exc.body or "").encode()) from exc
        except (HTTPError, OSError) as exc:
            raise BackendError(f"the Kubernetes API did not answer {method} {path}: {exc}") from exc
        if not 200 <= status <= 299:
            raise _error(method, path, status, data)
        parsed: Json = json.loads(data) if data else {}
        return parsed


def _error(method: str, path: str, status: int, data: bytes) -> KubeError:
    """A readable error from the API's ``Status`` object."""
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {}
    message = body.get("message") or data.decode("utf-8", "replace")[:300] or f"HTTP {status}"
    reason = body.get("reason", "")
    text = f"Kubernetes refused {method} {path}: {message}"
    if status == 403:
        text += " (the service account lacks the RBAC permission for it)"
    if status == 404:
        return KubeNotFound(text, status, reason)
    return KubeError(text, status, reason)
