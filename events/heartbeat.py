"""Training heartbeats: progress beats on ``gpu.heartbeat.<cluster>.<job>`` (core NATS, not persisted).

A PyTorch loop calls ``beat()`` once per step::

    with TrainingHeartbeat.from_env() as hb:          # AIOPS_NATS_URL, AIOPS_CLUSTER, AIOPS_JOB, RANK, ...
        for step, batch in enumerate(loader, start=1):
            t0 = time.perf_counter()
            loss = model(batch).sum(); loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # optional
            opt.step()
            hb.beat(step, time.perf_counter() - t0, loss=loss.item(), grad_norm=grad_norm.item())
            if step % 500 == 0:
                t0 = time.perf_counter(); save_checkpoint(model, step)
                hb.checkpointed(step, time.perf_counter() - t0)   # the platform measures write times

``beat()`` never blocks the loop: beats go to a background thread that owns the NATS connection.
Steps are averaged and published at most every ``min_interval_s``; while no step completes, the
last beat is repeated every ``keepalive_s``, so the hang detector can tell a process that is alive
but stuck (beats, no progress) from one that is gone (no beats).

``loss`` and ``grad_norm`` (optional; the numerics detector watches them for silent data corruption)
are never averaged: a beat carries the worst of its steps — the first non-finite value, else the
highest — so a one-step spike between two publishes is not smoothed away. A step whose value is
non-finite while the last beat sent was finite is sent at once, whatever ``min_interval_s``, so the
platform knows the exact first bad step; the NaN steps after it go at the usual rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

import nats
from nats.aio.client import Client as NatsClient
from pydantic import TypeAdapter

from events import subjects
from events.backoff import Backoff, retry_transient
from events.connection import nats_servers
from events.liveness import Liveness
from events.models import Heartbeat, utcnow
from events.outbox import Outbox

log = logging.getLogger(__name__)


PUBLISH_ATTEMPTS = 5

BUNDLE: TypeAdapter[list[Heartbeat]] = TypeAdapter(list[Heartbeat])
"""A JSON array of beats of one job: what a node-local relay sends instead of one message per rank."""


def encode_heartbeat(beat: Heartbeat) -> bytes:
    return beat.model_dump_json(exclude_none=True).encode()


def decode_heartbeats(data: bytes) -> list[Heartbeat]:
    """One beat (an object) or a bundle (an array); raises ``pydantic.ValidationError``."""
    if data.lstrip()[:1] == b"[":
        return BUNDLE.validate_json(data)
    return [Heartbeat.model_validate_json(data)]


def heartbeat_subject(beat: Heartbeat) -> str:
    return subjects.heartbeat(beat.cluster, beat.job)


def worse(held: float | None, new: float | None) -> float | None:
    """The worse of two loss (or gradient norm) values: the first non-finite one, else the highest."""
    if held is None or new is None:
        return new if held is None else held
    if not math.isfinite(held):
        return held
    if not math.isfinite(new):
        return new
    return max(held, new)


@dataclass
class StepAverager:
    """Averages step timings between publishes (and keeps the worst loss and gradient norm); says
    when a beat is due."""

    min_interval_s: float
    monotonic: Callable[[], float] = time.monotonic
    steps: int = 0
    step_time_s: float = 0.0
    compute_s: float = 0.0
    comm_s: float = 0.0
    split: bool = True
    last_sent: float = field(default=-1e18)
    loss: float | None = None
    grad_norm: float | None = None

    def add(
        self,
        step_time_s: float,
        compute_s: float | None,
        comm_s: float | None,
        loss: float | None = None,
        grad_norm: float | None = None,
    ) -> None:
        self.steps += 1
        self.loss, self.grad_norm = worse(self.loss, loss), worse(self.grad_norm, grad_norm)
        self.step_time_s += step_time_s
        if compute_s is None or comm_s is None:
            self.split = False
        else:
            self.compute_s += compute_s
            self.comm_s += comm_s

    def due(self) -> bool:
        return self.monotonic() - self.last_sent >= self.min_interval_s

    def nonfinite(self) -> bool:
        """A non-finite loss or gradient norm is waiting."""
        return any(v is not None and not math.isfinite(v) for v in (self.loss, self.grad_norm))

    def take(self) -> tuple[float, float | None, float | None]:
        """(mean step time, mean compute, mean comm) since the last take; read ``loss`` and
        ``grad_norm`` before, as this resets them."""
        n = max(1, self.steps)
        out = (
            self.step_time_s / n,
            self.compute_s / n if self.split else None,
            self.comm_s / n if self.split else None,
        )
        self.steps, self.step_time_s, self.compute_s, self.comm_s, self.split = 0, 0.0, 0.0, 0.0, True
        self.loss = self.grad_norm = None
        self.last_sent = self.monotonic()
        return out


class TrainingHeartbeat:
    """The per-rank helper a training loop uses; see the module docstring."""

    def __init__(
        self,
        nats_url: str,
        *,
        cluster: str,
        job: str,
        rank: int,
        node: str,
        gpu: int | None = None,
        min_interval_s: float = 1.0,
        keepalive_s: float = 5.0,
        hang_after_s: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.nats_url = nats_url
        self.identity = {"cluster": cluster, "job": job, "rank": rank, "node": node, "gpu": gpu}
        self.hang_after_s = hang_after_s
        self.keepalive_s = keepalive_s
        self.clock = clock
        self.sent = 0
        self.retries = 0
        self.dropped = 0
        self._avg = StepAverager(min_interval_s)
        self._last: Heartbeat | None = None
        self._checkpoint: tuple[int, float] | None = None
        self._sent_nonfinite = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Heartbeat | None] | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @classmethod
    def from_env(cls, **overrides: object) -> TrainingHeartbeat:
        """From the launcher's environment: ``AIOPS_NATS_URL``, ``AIOPS_CLUSTER``, ``AIOPS_JOB``
        (else ``JOB_NAME``), ``RANK``, ``LOCAL_RANK`` (the GPU), ``NODE_NAME`` (else the host name),
        ``AIOPS_HANG_AFTER_S`` (the job's own hang threshold; unset = derived from its step time)."""
        env = os.environ
        args: dict[str, object] = {
            "nats_url": env.get("AIOPS_NATS_URL", "nats://127.0.0.1:4222"),
            "cluster": env.get("AIOPS_CLUSTER", "default"),
            "job": env.get("AIOPS_JOB") or env.get("JOB_NAME") or "job",
            "rank": int(env.get("RANK", "0")),
            "node": env.get("NODE_NAME") or socket.gethostname(),
            "gpu": int(env["LOCAL_RANK"]) if env.get("LOCAL_RANK") else None,
            "hang_after_s": float(env["AIOPS_HANG_AFTER_S"]) if env.get("AIOPS_HANG_AFTER_S") else None,
        }
        args.update(overrides)
        return cls(**args)  # type: ignore[arg-type]

    def start(self) -> TrainingHeartbeat:
        """Connect in a background thread; raises if NATS cannot be reached."""
        self._thread = threading.Thread(target=self._run, name="aiops-heartbeat", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def beat(
        self,
        step: int,
        step_time_s: float,
        *,
        compute_s: float | None = None,
        comm_s: float | None = None,
        collective_seq: int | None = None,
        loss: float | None = None,
        grad_norm: float | None = None,
    ) -> None:
        """Report that ``step`` finished after ``step_time_s`` seconds, with its ``loss`` and this
        rank's gradient norm before any reduction when known (floats: ``loss.item()``; anything
        ``float()`` takes); never blocks. A first non-finite value is sent at once."""
        self._avg.add(
            step_time_s,
            compute_s,
            comm_s,
            None if loss is None else float(loss),
            None if grad_norm is None else float(grad_norm),
        )
        checkpoint, self._checkpoint = self._checkpoint, None
        first_bad = self._avg.nonfinite() and not self._sent_nonfinite
        if checkpoint is None and not first_bad and not self._avg.due():
            return
        self._sent_nonfinite = self._avg.nonfinite()
        worst_loss, worst_grad = self._avg.loss, self._avg.grad_norm
        mean, compute, comm = self._avg.take()
        beat = Heartbeat.model_validate(
            {
                **self.identity,
                "step": step,
                "step_time_s": mean,
                "time": self.clock(),
                "compute_s": compute,
                "comm_s": comm,
                "collective_seq": collective_seq,
                "hang_after_s": self.hang_after_s,
                "checkpoint_step": checkpoint[0] if checkpoint else None,
                "checkpoint_write_s": checkpoint[1] if checkpoint else None,
                "loss": worst_loss,
                "grad_norm": worst_grad,
            }
        )
        if self._loop is not None and self._queue is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, beat)

    def checkpointed(self, step: int, write_s: float) -> None:
        """Report that the checkpoint of ``step`` was written, blocking the loop for ``write_s``
        seconds; it rides on the next beat (sent at once, whatever ``min_interval_s``). The platform
        measures the job's checkpoint write time from these (``checkpoint_advice``)."""
        if step < 0 or not write_s > 0:
            raise ValueError(f"checkpointed(step >= 0, write_s > 0), got {step}, {write_s}")
        self._checkpoint = (step, write_s)

    def close(self) -> None:
        if self._loop is not None and self._queue is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
            self._thread.join(timeout=10)

    def __enter__(self) -> TrainingHeartbeat:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        try:
            nc = await nats.connect(
                servers=nats_servers(self.nats_url),
                name=f"heartbeat {self.identity['job']}/{self.identity['rank']}",
                connect_timeout=2,
                max_reconnect_attempts=2,
                reconnect_time_wait=0.5,
            )
        except Exception as exc:
            raise ConnectionError(f"cannot reach NATS at {self.nats_url} to send heartbeats: {exc}") from exc
        # Fail fast at start, but once training runs never give up on a NATS that restarts.
        nc.options["max_reconnect_attempts"] = -1
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        self._ready.set()
        try:
            while True:
                try:
                    beat = await asyncio.wait_for(self._queue.get(), timeout=self.keepalive_s)
                except TimeoutError:
                    beat = (
                        self._last.model_copy(
                            update={"time": self.clock(), "checkpoint_step": None, "checkpoint_write_s": None}
                        )
                        if self._last
                        else None
                    )
                    if beat is None:
                        continue
                else:
                    if beat is None:
                        return
                    self._last = beat
                await self._send(nc, beat)
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()

    async def _send(self, nc: NatsClient, beat: Heartbeat) -> None:
        """Publish one beat, retried a few times through a NATS fault (the outbound buffer full
        while reconnecting, say); then it is given up (counted): a newer beat supersedes it."""

        def failed(exc: BaseException) -> None:
            self.retries += 1

        try:
            await retry_transient(
                lambda: nc.publish(heartbeat_subject(beat), encode_heartbeat(beat)),
                attempts=PUBLISH_ATTEMPTS,
                backoff=Backoff(0.05, 1.0),
                on_error=failed,
            )
        except Exception as exc:
            self.dropped += 1
            log.warning("heartbeat of step %d not sent: %r", beat.step, exc)
            return
        self.sent += 1


class HeartbeatRelay(Outbox[Heartbeat]):
    """Publishes heartbeats produced inside the event loop (the fleet twin's ranks) without blocking
    the producer; the queue is bounded and drops the newest when full, as a congested link would.
    A NATS fault holds the beats and retries them (``events.outbox``).

    Beats queued together are sent as one bundle per job (a JSON array on the job's subject), as a
    node-local relay would: a thousand ranks cost a few messages, not a thousand.
    """

    def __init__(self, nc: NatsClient, *, max_queue: int = 50_000, liveness: Liveness | None = None) -> None:
        super().__init__(
            "relay heartbeats", self._publish, max_queue=max_queue, max_batch=5000, liveness=liveness
        )
        self.nc = nc

    @property
    def published(self) -> int:
        return self.sent

    async def _publish(self, batch: list[Heartbeat]) -> None:
        by_subject: dict[str, list[Heartbeat]] = {}
        for beat in batch:
            by_subject.setdefault(heartbeat_subject(beat), []).append(beat)
        for subject, beats in by_subject.items():
            await self.nc.publish(subject, BUNDLE.dump_json(beats, exclude_none=True))
