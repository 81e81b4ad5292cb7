"""NATS cluster settings: several servers in AIOPS_NATS_URL, AIOPS_JS_REPLICAS; invalid ones are an
error at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aiops.settings import Settings
from events.connection import nats_servers


def test_a_comma_separated_url_is_the_list_of_servers_nats_py_takes() -> None:
    s = Settings(nats_url="nats://10.0.0.1:4222, nats://10.0.0.2:4222,10.0.0.3:4222", js_replicas=3)
    assert s.nats_server_list == ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]
    assert s.js_replicas == 3


@pytest.mark.parametrize(
    "url",
    ["nats://a:4222,,nats://b:4222", "http://a:4222", "nats://a:notaport", "nats://:4222", ","],
)
def test_a_malformed_server_list_is_refused_with_the_reason(url: str) -> None:
    with pytest.raises(ValidationError, match="nats_url"):
        Settings(nats_url=url)


def test_replicas_beyond_what_jetstream_allows_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOPS_NATS_URL", "nats://a:4222,nats://b:4222,nats://c:4222")
    monkeypatch.setenv("AIOPS_JS_REPLICAS", "7")
    with pytest.raises(ValidationError, match="js_replicas"):
        Settings()
    monkeypatch.setenv("AIOPS_JS_REPLICAS", "three")
    with pytest.raises(ValidationError, match="js_replicas"):
        Settings()


def test_replicas_on_the_embedded_single_server_are_refused() -> None:
    with pytest.raises(ValidationError, match="needs a NATS cluster"):
        Settings(js_replicas=3)


def test_one_url_is_one_server() -> None:
    assert nats_servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
