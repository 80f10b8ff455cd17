"""Secure by default: the API refuses keys and bind addresses it must not serve with."""

from __future__ import annotations

import pytest

from api.auth import InsecureConfig, check_config, is_loopback
from api.tracking_limits import address_bucket
from core.settings import Settings

GOOD = {"tracking_keys": "t" * 16, "read_keys": "r" * 16, "admin_keys": "a" * 16}


def test_no_keys_only_on_loopback_unless_explicitly_allowed() -> None:
    check_config(Settings(api_host="127.0.0.1"))
    check_config(Settings(api_host="::1"))
    check_config(Settings(api_host="localhost"))
    for host in ("0.0.0.0", "::", "10.1.2.3", "shop.example"):
        with pytest.raises(InsecureConfig, match="STREAMREC_ALLOW_NO_AUTH=1"):
            check_config(Settings(api_host=host))
    check_config(Settings(api_host="0.0.0.0", allow_no_auth=True))
    check_config(Settings(api_host="0.0.0.0", **GOOD))


def test_short_keys_and_keys_of_two_roles_are_refused_without_printing_them() -> None:
    with pytest.raises(InsecureConfig, match="STREAMREC_READ_KEYS holds a key of 7") as info:
        check_config(Settings(**{**GOOD, "read_keys": f"{'r' * 16},secret7"}))
    assert "secret7" not in str(info.value)
    with pytest.raises(InsecureConfig, match="TRACKING_KEYS and STREAMREC_ADMIN_KEYS"):
        check_config(Settings(**{**GOOD, "admin_keys": "t" * 16}))


def test_allow_no_auth_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_ALLOW_NO_AUTH", "1")
    assert Settings().allow_no_auth is True


def test_loopback_and_address_buckets() -> None:
    assert is_loopback("127.0.0.2") and not is_loopback("0.0.0.0")
    assert address_bucket("2001:db8::1") == address_bucket("2001:db8::ffff") == "2001:db8::/64"
    assert address_bucket("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_bucket("10.0.0.1") == "10.0.0.1" and address_bucket("testclient") == "testclient"
