"""A loopback Kubernetes API for the Kubernetes backend's tests: no API server runs here.

It serves recorded API objects (``recordings/*.json``, in the shapes the real API answers with:
``NodeList``, ``PodList``, Volcano ``Job``, ``PyTorchJob``, ``JobSet``, ``Status``) to the real
kubernetes client over HTTP, and follows the API's semantics where the backend depends on them:

- ``GET`` of an object or a collection, with ``labelSelector`` (``k``, ``k=v``, comma-joined)
  and ``fieldSelector=spec.nodeName=<node>``; 404 ``Status`` for an unknown object;
- ``PATCH`` with ``application/merge-patch+json`` (RFC 7386: ``null`` deletes), a
  ``metadata.resourceVersion`` in the patch is a precondition (409 ``Conflict`` when stale), and
  every write bumps the object's resourceVersion;
- every request must carry ``Authorization: Bearer <token>`` (401 ``Unauthorized`` otherwise);
- ``POST .../pods/<name>/eviction``: 201 ``Status`` and the pod turns Terminating
  (``metadata.deletionTimestamp`` set, still listed) until it has been read ``terminating_reads``
  more times (the kubelet stopping its containers), then it is gone; or the recorded 429
  ``TooManyRequests`` ``Status`` for a pod a PodDisruptionBudget protects;
- ``POST`` of a Volcano ``Command``: 201 with the object, named from ``generateName``.

Every request is kept (method, path, query, content type, body) for the test to assert on.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

RECORDINGS = Path(__file__).with_name("recordings")
Json = dict[str, Any]


def recording(name: str) -> Any:
    return json.loads((RECORDINGS / f"{name}.json").read_text())


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _status(code: int, reason: str, message: str, details: Json | None = None) -> Json:
    status: Json = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        status["details"] = details
    return status


def _selected(obj: Json, labels: str | None, fields: str | None) -> bool:
    own = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (labels or "").split(",")):
        key, _, value = term.partition("=")
        if key not in own or (value and own[key] != value):
            return False
    for term in filter(None, (fields or "").split(",")):
        key, _, value = term.partition("=")
        if key == "spec.nodeName" and obj.get("spec", {}).get("nodeName") != value:
            return False
    return True


@dataclass
class KubeApiDouble:
    """State: collection path -> objects by name. Seeded from recordings; see the module docstring."""

    collections: dict[str, dict[str, Json]] = field(default_factory=dict)
    evictions: dict[str, Json] = field(default_factory=dict)
    """``<namespace>/<pod>`` -> the recorded refusal (a 429 Status) for pods a PDB protects."""
    seen: list[Seen] = field(default_factory=list)
    conflicts: int = 0
    """Refuse this many of the next PATCHes with 409, as if another writer got there first."""
    token: str = "test-token"
    """The bearer token every request must carry."""
    terminating_reads: int = 2
    """How many more reads an evicted pod stays listed as Terminating before it is gone."""
    unauthorized: int = 0
    """Requests refused for a missing or wrong token."""
    _terminating: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _version: int = 1000

    def add(self, collection: str, *objects: Json) -> None:
        bucket = self.collections.setdefault(collection, {})
        for obj in objects:
            bucket[obj["metadata"]["name"]] = copy.deepcopy(obj)

    def obj(self, collection: str, name: str) -> Json:
        return self.collections[collection][name]

    def writes(self, method: str = "PATCH") -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    # -- request handling ----------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, content_type: str, body: bytes, authorization: str = ""
    ) -> tuple[int, Json]:
        parts = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        payload = json.loads(body) if body else None
        with self.lock:
            if authorization != f"Bearer {self.token}":
                self.unauthorized += 1
                return 401, _status(401, "Unauthorized", "Unauthorized")
            self.seen.append(Seen(method, parts.path, query, content_type, payload))
            if method == "GET":
                answer = self._get(parts.path, query)
                self._kubelet_progress(answer[1])
                return answer
            if method == "PATCH":
                return self._patch(parts.path, content_type, payload)
            if method == "POST":
                return self._post(parts.path, payload)
        return 405, _status(405, "MethodNotAllowed", f"{method} is not supported here")

    def _split(self, path: str) -> tuple[str, str | None]:
        if path in self.collections:
            return path, None
        head, _, name = path.rpartition("/")
        return head, name

    def _get(self, path: str, query: dict[str, str]) -> tuple[int, Json]:
        collection, name = self._split(path)
        bucket = self.collections.get(collection)
        if bucket is None:
            return 404, _status(404, "NotFound", f"the server could not find the requested resource ({path})")
        if name is None:
            items = [
                o
                for o in bucket.values()
                if _selected(o, query.get("labelSelector"), query.get("fieldSelector"))
            ]
            kind = (next(iter(bucket.values()), {}).get("kind") or "Object") + "List"
            return 200, {
                "kind": kind,
                "apiVersion": next(iter(bucket.values()), {}).get("apiVersion", "v1"),
                "metadata": {"resourceVersion": str(self._version)},
                "items": copy.deepcopy(items),
            }
        if name not in bucket:
            kind = collection.rsplit("/", 1)[-1]
            return 404, _status(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})
        return 200, copy.deepcopy(bucket[name])

    def _patch(self, path: str, content_type: str, patch: Any) -> tuple[int, Json]:
        if content_type != "application/merge-patch+json":
            return 415, _status(
                415, "UnsupportedMediaType", f"the double speaks merge-patch only, not {content_type}"
            )
        collection, name = self._split(path)
        bucket = self.collections.get(collection, {})
        if name not in bucket:
            return 404, _status(404, "NotFound", f'"{name}" not found')
        current = bucket[name]
        if self.conflicts:
            self.conflicts -= 1
            self._version += 1
            current["metadata"]["resourceVersion"] = str(self._version)  # someone else wrote
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"].get("resourceVersion"):
            return 409, _status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        patch = copy.deepcopy(patch)
        patch.get("metadata", {}).pop("resourceVersion", None)
        updated = merge_patch(current, patch)
        self._version += 1
        updated["metadata"]["resourceVersion"] = str(self._version)
        bucket[name] = updated
        return 200, copy.deepcopy(updated)

    def _post(self, path: str, body: Json) -> tuple[int, Json]:
        if path.endswith("/eviction"):
            collection, _, _ = path.rpartition("/")
            pods, _, pod = collection.rpartition("/")
            namespace = pods.split("/")[-2]
            refusal = self.evictions.get(f"{namespace}/{pod}")
            if refusal is not None:
                return refusal["code"], copy.deepcopy(refusal)
            if pod not in self.collections.get("/api/v1/pods", {}):
                return 404, _status(404, "NotFound", f'pods "{pod}" not found')
            victim = self.collections["/api/v1/pods"][pod]
            if pod not in self._terminating:
                victim["metadata"]["deletionTimestamp"] = "2026-03-02T04:00:00Z"
                victim["metadata"]["deletionGracePeriodSeconds"] = 30
                self._terminating[pod] = self.terminating_reads
            return 201, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            }
        created = copy.deepcopy(body)
        meta = created.setdefault("metadata", {})
        meta.setdefault("name", f"{meta.get('generateName', 'obj-')}x7k2p")
        self._version += 1
        meta.update({"uid": f"uid-{self._version}", "resourceVersion": str(self._version)})
        self.collections.setdefault(path, {})[meta["name"]] = created
        return 201, copy.deepcopy(created)

    def _kubelet_progress(self, answer: Json) -> None:
        """A read that listed a Terminating pod brings it closer to gone."""
        items = answer.get("items") if answer.get("kind", "").endswith("List") else [answer]
        for item in items or []:
            name = (item.get("metadata") or {}).get("name")
            if name in self._terminating:
                self._terminating[name] -= 1
                if self._terminating[name] <= 0:
                    del self._terminating[name]
                    self.collections.get("/api/v1/pods", {}).pop(name, None)

    # -- serving ---------------------------------------------------------------------------------

    def serve(self) -> tuple[str, ThreadingHTTPServer]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, answer = double.handle(
                    self.command,
                    self.path,
                    self.headers.get("Content-Type", ""),
                    body,
                    self.headers.get("Authorization", ""),
                )
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", server
