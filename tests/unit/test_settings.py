"""The daemon's settings: flags over LB_* environment over the TOML file over defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from lb.control.settings import CONFIG_ENV, DEFAULT_PORT, Settings, load_settings
from lb.xdp.config import Sizes
from lb.xdp.types import XdpMode


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No LB_* variable of the machine running the tests leaks in; any set by a test (or by
    load_settings, which records the file in LB_CONFIG) is undone afterwards."""
    for name in list(os.environ):
        if name.startswith("LB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(CONFIG_ENV, "")  # recorded, so restored (removed) after the test


@pytest.fixture
def toml(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "lb.toml"
        path.write_text(text)
        return path
    return write


def test_defaults_need_only_the_interface():
    s = load_settings(interface="eth0")
    assert (s.interface, s.api_host, s.api_port) == ("eth0", "127.0.0.1", DEFAULT_PORT)
    assert s.xdp_mode is XdpMode.NATIVE
    assert s.sizes() == Sizes()
    assert s.database == Path("/var/lib/lb/state.db")
    assert s.api_is_local and s.api_token is None


def test_missing_interface_is_an_error_naming_it():
    with pytest.raises(ValidationError, match="interface"):
        load_settings()


def test_file_overrides_defaults(toml):
    path = toml('interface = "eth1"\napi_port = 9000\nring_size = 13\nmax_backends = 10\n'
                'state_dir = "/tmp/lbstate"\n')
    s = load_settings(config=path)
    assert (s.interface, s.api_port, s.ring_size, s.max_backends) == ("eth1", 9000, 13, 10)
    assert s.database == Path("/tmp/lbstate/state.db")


def test_lb_config_names_the_file(toml, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(toml('interface = "eth1"\n')))
    assert load_settings().interface == "eth1"


def test_environment_overrides_the_file(toml, monkeypatch):
    path = toml('interface = "eth1"\napi_port = 9000\nttl = 10\n')
    monkeypatch.setenv("LB_API_PORT", "9100")
    monkeypatch.setenv("LB_XDP_MODE", "generic")
    s = load_settings(config=path)
    assert (s.interface, s.api_port, s.ttl, s.xdp_mode) == ("eth1", 9100, 10, XdpMode.GENERIC)


def test_flags_override_environment_and_file(toml, monkeypatch):
    path = toml('interface = "eth1"\napi_port = 9000\n')
    monkeypatch.setenv("LB_INTERFACE", "eth2")
    monkeypatch.setenv("LB_API_PORT", "9100")
    s = load_settings(config=path, interface="eth3", api_port=9200)
    assert (s.interface, s.api_port) == ("eth3", 9200)


def test_flags_left_unset_do_not_override(toml, monkeypatch):
    monkeypatch.setenv("LB_API_PORT", "9100")
    s = load_settings(config=toml('interface = "eth1"\n'), interface=None, api_port=None)
    assert (s.interface, s.api_port) == ("eth1", 9100)


def test_an_unknown_key_in_the_file_is_an_error(toml):
    with pytest.raises(ValidationError, match="api_prot"):
        load_settings(config=toml('interface = "eth1"\napi_prot = 9000\n'))


def test_api_on_a_non_loopback_address_needs_a_token():
    with pytest.raises(ValidationError, match="api_token"):
        load_settings(interface="eth0", api_host="0.0.0.0")
    with pytest.raises(ValidationError, match="api_token"):
        load_settings(interface="eth0", api_host="lb.example.net")


def test_api_on_a_non_loopback_address_with_a_token_is_accepted(monkeypatch):
    monkeypatch.setenv("LB_API_TOKEN", "s3cret")
    s = load_settings(interface="eth0", api_host="0.0.0.0")
    assert s.api_token is not None and s.api_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_loopback_api_needs_no_token(host):
    assert load_settings(interface="eth0", api_host=host).api_is_local


@pytest.mark.parametrize("mac", ["00:11:22:33:44", "00:11:22:33:44:zz", "0011.2233.4455",
                                 "00-11-22-33-44-55", ""])
def test_a_bad_next_hop_mac_is_rejected(mac):
    with pytest.raises(ValidationError, match="next_hop_mac"):
        load_settings(interface="eth0", next_hop_mac=mac)


def test_a_good_next_hop_mac_is_kept():
    assert load_settings(interface="eth0", next_hop_mac="02:00:0a:0B:0c:0d").next_hop_mac \
        == "02:00:0a:0B:0c:0d"


@pytest.mark.parametrize("sizes, field", [
    ({"ring_size": 65536}, "ring_size"),
    ({"ring_size": 1}, "ring_size"),
    ({"max_backends": 1}, "max_backends"),
    ({"max_backends": 32769}, "max_backends"),
    ({"max_vips": 0}, "max_vips"),
    ({"conn_table_size": 8}, "conn_table_size"),
])
def test_bad_sizes_are_rejected_naming_the_size(sizes, field):
    with pytest.raises(ValidationError, match=field):
        load_settings(interface="eth0", **sizes)


def test_bad_sizes_from_the_environment_are_rejected(monkeypatch):
    monkeypatch.setenv("LB_RING_SIZE", "1000")
    with pytest.raises(ValidationError, match="ring_size must be prime"):
        load_settings(interface="eth0")


def test_sizes_become_one_sizes_object():
    s = load_settings(interface="eth0", max_vips=8, max_backends=100, ring_size=1009,
                      conn_table_size=4096)
    assert s.sizes() == Sizes(max_vips=8, max_backends=100, ring_size=1009,
                              conn_table_size=4096)


def test_settings_are_built_directly_with_the_same_precedence(monkeypatch):
    monkeypatch.setenv("LB_INTERFACE", "eth2")
    assert Settings().interface == "eth2"
    assert Settings(interface="eth3").interface == "eth3"


@pytest.mark.parametrize("settle, match", [
    ({"settle_interval_s": -1}, "settle_interval_s"),
    ({"tcp_idle_timeout_s": 0}, "tcp_idle_timeout_s"),
    ({"settle_interval_s": 0.001, "tcp_idle_timeout_s": 900}, "must be 1..65535"),
])
def test_bad_settle_settings_are_rejected(settle, match):
    with pytest.raises(ValidationError, match=match):
        load_settings(interface="eth0", **settle)


def test_the_settle_limit_is_the_idle_timeout_in_settles():
    from lb.control.settings import settle_limit

    assert settle_limit(10, 900) == 90
    assert settle_limit(0.5, 3) == 6
    assert settle_limit(7, 900) == 129  # rounded up: a flow is held at least that long
    assert settle_limit(0, 900) == 0  # settling off


# --- `lb run` flags, generated from the settings fields -------------------------------------
def _run_args(*argv: str):
    import argparse

    from lb.cli import add_settings_flags

    parser = argparse.ArgumentParser()
    fields = add_settings_flags(parser)
    args = parser.parse_args(argv)
    return {name: getattr(args, name) for name in fields}


def test_every_setting_but_the_token_is_a_run_flag():
    import argparse

    from lb.cli import add_settings_flags

    fields = add_settings_flags(argparse.ArgumentParser())
    assert fields == [n for n in Settings.model_fields if n != "api_token"]
    for name in ("interface", "netns", "xdp_mode", "next_hop_mac", "egress_interface", "mtu",
                 "api_host", "api_port", "state_dir", "pin_dir", "max_vips", "max_backends",
                 "ring_size", "conn_table_size", "settle_interval_s", "tcp_idle_timeout_s",
                 "log_level"):  # the flags `lb run` has always had
        assert name in fields


def test_run_flags_are_typed_and_override_environment_and_file(toml, monkeypatch):
    monkeypatch.setenv("LB_API_PORT", "9100")
    monkeypatch.setenv("LB_INTERFACE", "eth2")
    flags = _run_args("--api-port", "9200", "--xdp-mode", "generic", "--settle-interval-s",
                      "0.5", "--log-level", "debug")
    assert (flags["api_port"], flags["settle_interval_s"]) == (9200, 0.5)
    s = load_settings(toml('interface = "eth1"\napi_port = 9000\n'), **flags)
    assert (s.interface, s.api_port, s.xdp_mode, s.log_level) == (
        "eth2", 9200, XdpMode.GENERIC, "debug")


def test_run_flags_not_given_override_nothing(toml, monkeypatch):
    flags = _run_args()
    assert set(flags.values()) == {None}
    monkeypatch.setenv("LB_API_PORT", "9100")
    s = load_settings(toml('interface = "eth1"\nring_size = 13\n'), **flags)
    assert (s.interface, s.api_port, s.ring_size) == ("eth1", 9100, 13)


@pytest.mark.parametrize("argv", [("--api-port", "x"), ("--xdp-mode", "fast"),
                                  ("--log-level", "loud"), ("--api-token", "s3cret")])
def test_bad_run_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _run_args(*argv)
    assert e.value.code == 2


def test_run_help_shows_defaults_and_ends_with_examples(capsys):
    from lb.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    words = " ".join(out.split())
    assert "--settle-interval-s" in out and "(LB_SETTLE_INTERVAL_S; default 10.0)" in words
    assert "--api-token" not in out
    assert out.rstrip().splitlines()[-1].lstrip().startswith("LB_INTERFACE=eth0")
    assert out.index("examples:") > out.index("--log-level {")
