"""SECURE_COOKIES: on unless turned off, and off only on a loopback HTTP_HOST (`mevaas up`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mevaas_gateway.server import GatewaySettings

KEY = "c" * 44


def settings(**values: object) -> GatewaySettings:
    return GatewaySettings(gateway_session_key=KEY, nats_url="nats://127.0.0.1:4222", **values)  # type: ignore[arg-type]


def test_cookies_are_secure_by_default_everywhere() -> None:
    assert settings().secure_cookies is True
    assert settings(http_host="0.0.0.0").secure_cookies is True


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_a_loopback_gateway_may_serve_plain_http_cookies(host: str) -> None:
    assert settings(secure_cookies=False, http_host=host).secure_cookies is False


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "portal.example.com"])
def test_secure_cookies_off_is_refused_off_loopback(host: str) -> None:
    with pytest.raises(ValidationError, match="SECURE_COOKIES=false is only allowed with a loopback"):
        settings(secure_cookies=False, http_host=host)


def test_the_environment_is_checked_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURE_COOKIES", "false")
    monkeypatch.setenv("HTTP_HOST", "0.0.0.0")
    with pytest.raises(ValidationError, match="loopback"):
        settings()
