import asyncio

import nats
import pytest

from aiops.nats_server import EmbeddedNats, NatsServerError


def test_the_embedded_server_listens_on_a_port_it_chose_and_stops_cleanly(tmp_path):
    server = EmbeddedNats(tmp_path / "n")
    url = server.start()
    try:
        assert url.startswith("nats://127.0.0.1:") and server.running

        async def roundtrip() -> bytes:
            nc = await nats.connect(url)
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t.>"])
            ack = await js.publish("t.x", b"hi")
            msg = await js.get_msg("T", ack.seq)
            await nc.close()
            return msg.data

        assert asyncio.run(roundtrip()) == b"hi"
    finally:
        server.stop()
    assert not server.running
    assert (tmp_path / "n" / "store" / "jetstream").is_dir()  # data stays in the chosen folder


def test_two_embedded_servers_run_side_by_side(tmp_path):
    with EmbeddedNats(tmp_path / "a") as a, EmbeddedNats(tmp_path / "b") as b:
        assert a.url != b.url


def test_a_missing_binary_is_a_readable_error(monkeypatch, tmp_path):
    monkeypatch.setattr("aiops.nats_server.find_binary", lambda: tmp_path / "no-such-nats-server")
    with pytest.raises(NatsServerError, match="cannot start"):
        EmbeddedNats(tmp_path / "c").start()
