"""The daemon's settings: one object built from flags, environment (LB_*) and a TOML file.

Precedence, highest first: command-line flags, environment variables (`LB_INTERFACE`, ...),
the TOML file named by `--config` or `LB_CONFIG`, then the defaults below.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from lb.control.etcd import parse_store_url
from lb.xdp.config import RuntimeConfig, Sizes, _mac_bytes
from lb.xdp.types import XdpMode

DEFAULT_PORT = 8470
CONFIG_ENV = "LB_CONFIG"


class Settings(BaseSettings):
    """Everything `lb run` needs; see `lb run --help` and the README's daemon section.

    Each field is one `lb run` flag (`--xdp-mode` for xdp_mode; secrets excepted), its
    description the flag's help: a new setting is one field here."""

    model_config = SettingsConfigDict(env_prefix="LB_", extra="forbid")

    interface: str = Field(description="interface the XDP program is attached to")
    netns: str | None = Field(None, description="network namespace of the interface (labs); "
                              "the API socket stays in the namespace the daemon starts in")
    xdp_mode: XdpMode = Field(XdpMode.NATIVE, description="native, or generic (SKB) when asked")
    next_hop_mac: str | None = Field(None, description="destination MAC of encapsulated "
                                     "frames; default: the default route's gateway's MAC")
    egress_interface: str | None = Field(None, description="two-arm: send encapsulated "
                                         "frames out of this interface (XDP_REDIRECT)")
    store: str = Field("sqlite", description="where desired state lives: sqlite (a file in "
                       "state_dir, one host) or etcd://HOST:PORT[,HOST:PORT...]/PREFIX (a fleet)")
    host_name: str = Field(default_factory=socket.gethostname, description="this host's name "
                           "in the fleet (etcd store); default: the host name")
    fleet_health: Literal["fleet", "local"] = Field(
        "fleet", description="in a fleet, rings use the fleet's health verdicts (fleet: the "
        "same rings on every host) or this host's own (local)")
    fleet_lease_ttl_s: int = Field(10, ge=2, le=300, description="seconds a host that stopped "
                                   "renewing its fleet report stays in the fleet")
    replace_foreign: bool = Field(False, description="take the interface over even when "
                                  "it has an XDP program that is not lb's (default: refuse "
                                  "and leave it attached)")
    chain_slot: int | None = Field(None, ge=0, lt=8, description="share the interface: "
                                   "attach the chain's root and run the balancer in this "
                                   "slot, after the programs of lower slots (lb/xdp/chain.h)")
    mtu: int | None = Field(None, description="L3 MTU toward backends; default: the "
                            "egress interface's MTU")
    ttl: int = Field(64, description="outer TTL / hop limit of encapsulated packets")
    encap_source_v4: str = Field("172.16.0.0/16", description="prefix of the outer IPv4 "
                                 "source addresses")
    encap_source_v6: str = Field("fd00:ec::/96", description="prefix of the outer IPv6 "
                                 "source addresses")
    udp_timeout_s: float = Field(30.0, description="a UDP flow idle this many seconds takes a "
                                 "fresh ring decision")
    tcp_idle_timeout_s: float = Field(900.0, ge=1, description="a TCP flow idle this many "
                                      "seconds after its ring slot changed may follow it")
    settle_interval_s: float = Field(10.0, ge=0, description="seconds between ring "
                                     "slot settles; 0: never (every TCP packet reads the "
                                     "connection table)")
    api_host: str = Field("127.0.0.1", description="API bind address")
    api_port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="API port")
    api_token: SecretStr | None = Field(None, description="bearer token for changes; "
                                        "required when api_host is not a loopback address "
                                        "(environment or file only: a flag shows in `ps`)")
    api_max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request "
                                    "body the API reads; 413 beyond it")
    api_header_timeout_s: float = Field(10.0, gt=0, description="a connection that has not "
                                        "sent a whole request head this long is closed")
    api_keep_alive_s: int = Field(5, ge=1, description="an idle keep-alive connection is "
                                  "closed after this many seconds")
    api_max_connections: int = Field(256, ge=1, description="connections at once; beyond "
                                     "it the oldest still sending its request head is closed")
    state_dir: Path = Field(Path("/var/lib/lb"), description="where the database lives")
    pin_dir: Path = Field(Path("/sys/fs/bpf/lb"), description="bpffs directory of the maps")
    max_vips: int = Field(Sizes.max_vips, description="VIPs at once")
    max_backends: int = Field(Sizes.max_backends, description="backend slots, at most 32768")
    ring_size: int = Field(Sizes.ring_size, description="Maglev ring slots per VIP, a prime")
    conn_table_size: int = Field(Sizes.conn_table_size, description="connection-table "
                                 "entries per CPU per address family, a power of two")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="daemon and API log level")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(CONFIG_ENV)
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty LB_API_TOKEN is no token: "Bearer " would be a password anyone can send.
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value != "sqlite":
            parse_store_url(value)  # ValueError names what is wrong
        return value

    @field_validator("next_hop_mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        if value is not None:
            _mac_bytes(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        self.sizes()  # validates the sizes
        settle_limit(self.settle_interval_s, self.tcp_idle_timeout_s)  # and the settle limit
        if not self.api_is_local and self.api_token is None:
            raise ValueError(f"api_host {self.api_host} is not a loopback address: set "
                             "api_token (LB_API_TOKEN) so that changes need a bearer token")
        return self

    @property
    def api_is_local(self) -> bool:
        try:
            return ipaddress.ip_address(self.api_host).is_loopback
        except ValueError:
            return self.api_host == "localhost"

    @property
    def database(self) -> Path:
        return self.state_dir / "state.db"

    def sizes(self) -> Sizes:
        return Sizes(max_vips=self.max_vips, max_backends=self.max_backends,
                     ring_size=self.ring_size, conn_table_size=self.conn_table_size)

    def runtime_config(self, next_hop_mac: str, src_mac: str, egress_ifindex: int,
                       mtu: int) -> RuntimeConfig:
        return RuntimeConfig(next_hop_mac=next_hop_mac, src_mac=src_mac,
                             egress_ifindex=egress_ifindex, mtu=self.mtu or mtu, ttl=self.ttl,
                             encap_source_v4=self.encap_source_v4,
                             encap_source_v6=self.encap_source_v6,
                             udp_timeout_s=self.udp_timeout_s)


def settle_limit(settle_interval_s: float, tcp_idle_timeout_s: float) -> int:
    """Settles a flow may stay idle through and still hold its slot: tcp_idle_timeout_s in
    settle intervals, rounded up (0 when settling is off)."""
    if not settle_interval_s:
        return 0
    limit = math.ceil(tcp_idle_timeout_s / settle_interval_s)
    if not 1 <= limit <= 0xFFFF:
        raise ValueError(f"tcp_idle_timeout_s / settle_interval_s must be 1..65535, got {limit}")
    return limit


def load_settings(config: str | Path | None = None, **flags: Any) -> Settings:
    """Settings from flags (None values ignored), environment and the TOML file."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    return Settings(**{k: v for k, v in flags.items() if v is not None})
