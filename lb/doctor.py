"""`lb doctor`: checks a host for what makes an XDP balancer fail silently, and says how to fix it.

Each check is a small function returning one `Finding` (name, status, detail, fix). Statuses:

    ok    nothing to do
    info  worth knowing (performance, the backends' side); never a failure
    warn  the balancer may run, but slowly or dropping some packets
    fail  `lb run` will not start, or will not balance

`run_checks()` runs the host checks, then the interface checks when an interface is named
(inside `netns` if given). Nothing here imports bcc at module level: a broken bcc is one of
the things reported. The parsers (`ethtool -i`, `ethtool -k`, `ethtool -l`, `ip -d link`,
kernel releases) and the MTU arithmetic are pure functions, tested without root.
"""

from __future__ import annotations

import enum
import functools
import importlib
import json
import os
import platform
import re
import socket
import subprocess
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar


class Status(enum.StrEnum):
    """How bad a finding is; only `fail` makes `lb doctor` exit non-zero."""

    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """One check's verdict: what was seen (`detail`) and, unless ok, what to do (`fix`)."""

    name: str
    status: Status
    detail: str
    fix: str = ""


# The oldest kernel the data plane runs on, and what sets the bar (newest first).
MIN_KERNEL = (5, 11)
KERNEL_NEEDS = (
    "bpf_ktime_get_coarse_ns for UDP idle times (5.11)",
    "BPF_MAP_UPDATE_BATCH for whole-ring writes (5.6)",
    "BPF_F_MMAPABLE arrays for the rings (5.5)",
    "native XDP on veth for the labs (4.19)",
)
# Bytes an outer header adds: IPv4 (IP-in-IP, 6in4) or IPv6 (4in6, IPv6-in-IPv6).
ENCAP_V4 = 20
ENCAP_V6 = 40
# What a client on the Internet sends at most: the MTU the VIPs must accept unfragmented.
CLIENT_MTU = 1500
# Above this MTU many drivers refuse native XDP unless they support multi-buffer XDP (one page
# per frame, minus headroom and skb_shared_info: mlx5 3498, virtio_net about 3506).
XDP_SINGLE_PAGE_MTU = 3498
# Drivers with native (driver-mode) XDP in mainline Linux, by `ethtool -i` name; not exhaustive.
NATIVE_XDP_DRIVERS = frozenset({
    "mlx5_core", "mlx4_en", "i40e", "ice", "ixgbe", "ixgbevf", "igb", "igc", "bnxt_en", "nfp",
    "qede", "ena", "sfc", "virtio_net", "veth", "tun", "thunder-nicvf", "enetc", "stmmac",
    "mvneta", "mvpp2", "fec", "dpaa2-eth", "netsec", "cpsw", "atlantic", "hv_netvsc", "gve",
    "bond", "lan966x-switch", "octeontx2-nicpf", "idpf",
})
# Offloads that merge or reshape frames before XDP sees them: drivers refuse to attach natively
# while they are on (mlx5, ixgbe, virtio_net), or XDP sees frames bigger than the wire's.
XDP_HOSTILE_OFFLOADS = ("large-receive-offload", "rx-gro-hw")
# Capability bits (linux/capability.h) the daemon uses: bcc needs CAP_SYS_ADMIN for its
# compile-and-load path, netlink attach needs CAP_NET_ADMIN.
CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
BPFFS = Path("/sys/fs/bpf")
PROC_SYS = Path("/proc/sys")


# --- pure parts ------------------------------------------------------------------------------
def parse_kernel_release(release: str) -> tuple[int, int]:
    """(major, minor) of a `uname -r` string such as "6.18.44-fc-v657" or "5.15.0-91-generic"."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(m.group(1)), int(m.group(2))


def parse_ethtool_info(text: str) -> dict[str, str]:
    """`ethtool -i DEV` as {key: value}, e.g. {"driver": "mlx5_core", "bus-info": ...}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Feature:
    """One line of `ethtool -k`: on or off, and whether the driver lets it change."""

    on: bool
    fixed: bool


def parse_ethtool_features(text: str) -> dict[str, Feature]:
    """`ethtool -k DEV` as {feature: Feature}; the "Features for DEV:" title is skipped."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\w-]+):\s+(on|off)\b(.*)$", line)
        if m:
            out[m.group(1)] = Feature(on=m.group(2) == "on", fixed="[fixed]" in m.group(3))
    return out


def parse_ethtool_channels(text: str) -> int | None:
    """RX queues in use from `ethtool -l DEV`: the current Combined plus RX counts (None when
    the driver reports neither)."""
    _, sep, current = text.partition("Current hardware settings:")
    if not sep:
        return None
    total, seen = 0, False
    for line in current.splitlines():
        m = re.match(r"\s*(RX|Combined):\s+(\d+)", line)
        if m:
            total, seen = total + int(m.group(2)), True
    return total if seen and total > 0 else None


def parse_ip_link_xdp(text: str) -> tuple[str | None, int | None]:
    """The XDP mode iproute2 shows in `ip -d link show dev DEV` ("xdp" native, "xdpgeneric",
    "xdpoffload", "xdpmulti") and the program id, or (None, None) when nothing is attached."""
    mode = re.search(r"\b(xdpgeneric|xdpoffload|xdpmulti|xdp)\b", text)
    prog = re.search(r"prog/xdp id (\d+)", text)
    return (mode.group(1) if mode else None), (int(prog.group(1)) if prog else None)


def mtu_headroom(mtu: int, client_mtu: int = CLIENT_MTU) -> tuple[Status, str]:
    """Whether an L3 MTU of `mtu` toward the backends carries a `client_mtu`-byte packet once
    encapsulated: with an IPv6 outer header (+40, ok), only an IPv4 one (+20, warn), or
    neither (warn: full-size packets to a VIP are answered with ICMP "too big", so clients
    shrink them by path MTU discovery, a round trip later, and only when ICMP reaches them)."""
    if mtu >= client_mtu + ENCAP_V6:
        return Status.OK, (f"MTU {mtu} >= {client_mtu} + {ENCAP_V6}: full-size packets fit "
                           "once encapsulated, IPv4 and IPv6 outer headers")
    if mtu >= client_mtu + ENCAP_V4:
        return Status.WARN, (f"MTU {mtu}: room for an IPv4 outer header (+{ENCAP_V4}) only; "
                             f"{client_mtu}-byte packets to IPv6 backends are answered "
                             "with ICMP 'too big' (icmp_too_big; IPv4 without DF: drop_too_big)")
    largest = mtu - ENCAP_V4
    return Status.WARN, (f"MTU {mtu} leaves no headroom for a {client_mtu}-byte client packet: "
                         f"only packets up to {largest} (IPv4 backends) / {mtu - ENCAP_V6} (IPv6 "
                         "backends) bytes are forwarded; bigger ones are answered with ICMP "
                         "'too big' (icmp_too_big), or dropped when IPv4 without DF "
                         "(drop_too_big)")


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when no finding failed, 1 otherwise (warnings do not fail the run)."""
    return 1 if any(f.status == Status.FAIL for f in findings) else 0


def missing_capabilities(cap_eff_hex: str) -> list[str]:
    """Names of the CAPABILITIES absent from a CapEff mask (hex, as in /proc/PID/status)."""
    mask = int(cap_eff_hex, 16)
    return [name for name, bit in CAPABILITIES.items() if not mask >> bit & 1]


# --- host checks -----------------------------------------------------------------------------
def check_privileges() -> Finding:
    status = Path("/proc/self/status").read_text()
    m = re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.M)
    missing = missing_capabilities(m.group(1)) if m else list(CAPABILITIES)
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    if not missing:
        return Finding("privileges", Status.OK, f"{who}, with {', '.join(CAPABILITIES)}")
    return Finding("privileges", Status.FAIL, f"{who}, missing {', '.join(missing)}",
                   "run as root, or grant them (systemd: AmbientCapabilities=, see "
                   "deploy/lb.service)")


def check_kernel(release: str | None = None) -> Finding:
    release = release or platform.release()
    version = parse_kernel_release(release)
    need = ".".join(map(str, MIN_KERNEL))
    if version >= MIN_KERNEL:
        return Finding("kernel", Status.OK, f"{release} >= {need}")
    return Finding("kernel", Status.FAIL,
                   f"{release} < {need}, which the data plane needs: " + "; ".join(KERNEL_NEEDS),
                   f"boot a kernel >= {need} (Debian 12's 6.1 will do)")


def _read_sysctl(key: str) -> str | None:
    try:
        return (PROC_SYS / key.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def check_jit() -> Finding:
    value = _read_sysctl("net.core.bpf_jit_enable")
    fix = "sysctl -w net.core.bpf_jit_enable=1 (persist it in /etc/sysctl.d/)"
    if value is None:
        return Finding("bpf JIT", Status.FAIL, "net.core.bpf_jit_enable is missing: no JIT in "
                       "this kernel, every packet runs in the BPF interpreter (many times slower)",
                       "boot a kernel built with CONFIG_BPF_JIT=y")
    if value == "1":
        return Finding("bpf JIT", Status.OK, "net.core.bpf_jit_enable = 1")
    if value == "2":
        return Finding("bpf JIT", Status.WARN, "net.core.bpf_jit_enable = 2: JIT on, but every "
                       "load dumps the image to the kernel log (debug mode)", fix)
    return Finding("bpf JIT", Status.FAIL, f"net.core.bpf_jit_enable = {value}: programs run in "
                   "the interpreter, many times slower", fix)


def check_jit_hardening() -> Finding:
    harden = _read_sysctl("net.core.bpf_jit_harden")
    kallsyms = _read_sysctl("net.core.bpf_jit_kallsyms")
    detail = f"bpf_jit_harden = {harden}, bpf_jit_kallsyms = {kallsyms}"
    if harden in (None, "0"):
        return Finding("bpf JIT hardening", Status.OK, detail + " (kallsyms: program names in "
                       "perf profiles when 1)")
    return Finding("bpf JIT hardening", Status.INFO, detail + ": constant blinding costs a few "
                   "percent per packet" + (" (root's programs included)" if harden == "2" else
                                           " (only unprivileged programs: not the daemon's)"),
                   "keep it if policy wants it; sysctl -w net.core.bpf_jit_harden=0 to measure "
                   "without")


def _mount_type(path: Path, mounts: str | None = None) -> str | None:
    mounts = mounts if mounts is not None else Path("/proc/self/mounts").read_text()
    found = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == str(path):
            found = fields[2]  # the last mount on a path is the visible one
    return found


def check_bpffs(mounts: str | None = None) -> Finding:
    kind = _mount_type(BPFFS, mounts)
    fix = (f"mount -t bpf bpf {BPFFS} (scripts/install.sh does; at boot: an fstab line "
           f"'bpf {BPFFS} bpf defaults 0 0')")
    if kind == "bpf":
        return Finding("bpffs", Status.OK, f"mounted at {BPFFS}: pinned maps survive restarts")
    if kind is None:
        return Finding("bpffs", Status.FAIL, f"nothing mounted at {BPFFS}: the daemon cannot "
                       "pin its maps (and refuses to start)", fix)
    return Finding("bpffs", Status.FAIL, f"{BPFFS} is a {kind} mount, not bpf", fix)


def check_headers(release: str | None = None, modules: Path = Path("/lib/modules")) -> Finding:
    release = release or platform.release()
    kdir = modules / release
    fix = ("apt-get install linux-headers-amd64 (or your kernel's headers), then "
           "scripts/install.sh links them under " + str(kdir))
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env:
        ok = (Path(env) / "include/linux/kconfig.h").exists()
        return Finding("kernel headers", Status.OK if ok else Status.FAIL,
                       f"BCC_KERNEL_SOURCE={env}" + ("" if ok else ": no include/linux/kconfig.h"),
                       "" if ok else "point BCC_KERNEL_SOURCE at a merged tree, or unset it")
    if not (kdir / "build" / "include").is_dir():
        return Finding("kernel headers", Status.FAIL, f"{kdir}/build/include is missing: bcc "
                       "fails with 'Unable to find kernel headers'", fix)
    kconfig = [d for d in ("build", "source") if (kdir / d / "include/linux/kconfig.h").exists()]
    if not kconfig:
        return Finding("kernel headers", Status.FAIL, f"{kdir}/build has no include/linux/"
                       f"kconfig.h, nor has {kdir}/source: bcc fails with 'kconfig.h not found'",
                       fix)
    where = os.path.realpath(kdir / "build")
    return Finding("kernel headers", Status.OK, f"{kdir}/build -> {where}")


def check_bcc() -> Finding:
    fix = ("apt-get install python3-bpfcc, and use a venv made with --system-site-packages "
           "from /usr/bin/python3 (scripts/install.sh); never pip install bcc (an unrelated "
           "package)")
    try:
        bcc = importlib.import_module("bcc")
    except Exception as e:  # noqa: BLE001 (an ImportError, or libbcc failing to load)
        return Finding("bcc", Status.FAIL, f"cannot import bcc: {e}", fix)
    if not hasattr(bcc, "BPF"):
        return Finding("bcc", Status.FAIL, f"'bcc' is {getattr(bcc, '__file__', '?')}, not "
                       "the BPF Compiler Collection", fix)
    version = getattr(bcc, "__version__", "?")
    assert bcc.__file__ is not None  # a module with BPF in it came from a file
    return Finding("bcc", Status.OK, f"bcc {version} from {Path(bcc.__file__).parent}")


# --- interface checks ------------------------------------------------------------------------
def _command(argv: Sequence[str], netns: str | None) -> str | None:
    """stdout of `argv` (inside `netns` through `ip netns exec`), or None if it fails."""
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


T = TypeVar("T")


def _in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """`fn()` with this thread in `netns` (None: where it is)."""
    if not netns:
        return fn()
    from lb.netns import run_in_netns
    return run_in_netns(netns, fn)


def check_interface_exists(interface: str, netns: str | None) -> Finding:
    where = f" in netns {netns}" if netns else ""
    try:
        index = _in_netns(netns, lambda: socket.if_nametoindex(interface))
    except (OSError, FileNotFoundError) as e:
        return Finding("interface", Status.FAIL, f"{interface}{where}: {e}",
                       "name an existing interface (ip link show" +
                       (f", ip -n {netns} link show)" if netns else ")"))
    return Finding("interface", Status.OK, f"{interface}{where}, ifindex {index}")


def check_driver(interface: str, netns: str | None) -> Finding:
    text = _command(["ethtool", "-i", interface], netns)
    driver = parse_ethtool_info(text).get("driver") if text else None
    if driver is None and not netns:
        link = Path("/sys/class/net", interface, "device", "driver")
        driver = os.path.basename(os.path.realpath(link)) if link.exists() else None
    if driver is None:
        return Finding("driver", Status.WARN, f"cannot tell {interface}'s driver (ethtool -i "
                       "failed)", "apt-get install ethtool; then ethtool -i " + interface)
    if driver not in NATIVE_XDP_DRIVERS:
        return Finding("driver", Status.WARN, f"{driver}: not known to support native XDP; "
                       "lb run asks for native mode and fails to attach if it does not",
                       "use a NIC whose driver has native XDP (mlx5_core, i40e, ice, ixgbe, "
                       "bnxt_en, virtio_net, ...); xdp_mode = \"generic\" works anywhere but "
                       "runs after the skb is built (slow)")
    detail = f"{driver}: native XDP supported"
    if driver == "virtio_net":
        detail += (" (needs as many queue pairs as CPUs for XDP_TX, and guest offloads off: "
                   "LRO/GRO-HW, see 'offloads')")
    return Finding("driver", Status.OK, detail)


def _whose(prog_id: int, pin_dir: Path | None) -> tuple[str, bool]:
    """("program id N, name 'x', ours|not ours", ours) of an attached program."""
    from lb.xdp import xdpinfo
    if pin_dir is None:
        from lb.control.settings import Settings
        pin_dir = Settings.model_fields["pin_dir"].default
    try:
        info = xdpinfo.program_info(prog_id)
    except OSError as e:
        return f"program id {prog_id} (unreadable: {e})", True
    ours = xdpinfo.is_ours(info, xdpinfo.own_map_ids(pin_dir))
    whose = f"lb's (uses the maps pinned in {pin_dir})" if ours else "not lb's"
    if ours and info.name == xdpinfo.ROOT_NAME:
        from lb.xdp import chain
        slots = {slot: xdpinfo.program_info(i).name for slot, i in chain.slots(pin_dir).items()}
        whose += f"; the chain's slots: {slots or 'none'}"
    return f"program id {prog_id}, name {info.name!r}, tag {info.tag}, {whose}", ours


def check_attached(interface: str, netns: str | None, pin_dir: Path | None = None) -> Finding:
    argv = ["ip", "-d", "link", "show", "dev", interface]
    text = _command(["ip", "-n", netns, *argv[1:]] if netns else argv, None)
    if text is None:
        return Finding("attached program", Status.WARN, f"`{' '.join(argv)}` failed",
                       "apt-get install iproute2")
    mode, prog = parse_ip_link_xdp(text)
    if mode is None:
        return Finding("attached program", Status.OK, "no XDP program attached (lb run attaches "
                       "in native mode)")
    what = f"program id {prog}" if prog is not None else "a program"
    if prog is not None:
        what, ours = _whose(prog, pin_dir)
        if not ours:
            return Finding("attached program", Status.WARN, f"{what} in {mode} mode, NOT lb's: "
                           "lb run refuses this interface and leaves it attached",
                           "chain lb after it (chain_slot; lb/xdp/chain.h), remove it (ip link "
                           f"set dev {interface} xdp off), or lb run --replace-foreign")
    if mode == "xdp":
        return Finding("attached program", Status.OK, f"{what} in native (driver) mode")
    if mode == "xdpgeneric":
        return Finding("attached program", Status.WARN, f"{what} in generic (SKB) mode: it runs "
                       "after the kernel built an skb, several times slower than native",
                       f"lb detach --interface {interface}, set xdp_mode = \"native\" and restart "
                       "(if native attach fails, see 'driver' and 'offloads')")
    return Finding("attached program", Status.WARN, f"{what} in {mode} mode, not native",
                   f"detach it (ip link set dev {interface} xdpoffload off / xdp off) before "
                   "lb run attaches natively")


def check_mtu(interface: str, netns: str | None, client_mtu: int = CLIENT_MTU) -> Finding:
    def read() -> int:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=interface)[0]
            return ipr.link("get", index=index)[0].get_attr("IFLA_MTU")

    mtu = int(_in_netns(netns, read))
    status, detail = mtu_headroom(mtu, client_mtu)
    fix = ""
    if status != Status.OK:
        fix = (f"ip link set dev {interface} mtu {client_mtu + ENCAP_V6} (and the switches and "
               f"backends on the way: jumbo frames), or clamp clients' TCP MSS at the edge to "
               f"{mtu - ENCAP_V6 - 40} (IPv4 outer: {mtu - ENCAP_V4 - 40})")
    if mtu > XDP_SINGLE_PAGE_MTU:
        detail += (f"; MTU > {XDP_SINGLE_PAGE_MTU}: drivers without multi-buffer XDP refuse "
                   "native XDP at this size")
        if status == Status.OK:
            status = Status.INFO
            fix = (f"if native attach fails, lower the MTU to {XDP_SINGLE_PAGE_MTU} or less "
                   "(headroom needs only +40)")
    return Finding("MTU headroom", status, detail, fix)


def check_offloads(interface: str, netns: str | None) -> Finding:
    text = _command(["ethtool", "-k", interface], netns)
    if text is None:
        return Finding("offloads", Status.WARN, f"ethtool -k {interface} failed",
                       "apt-get install ethtool")
    features = parse_ethtool_features(text)
    on = [name for name in XDP_HOSTILE_OFFLOADS if name in features and features[name].on]
    if not on:
        return Finding("offloads", Status.OK, "LRO and hardware GRO off")
    fixed = [name for name in on if features[name].fixed]
    detail = (f"{', '.join(on)} on: the NIC merges frames before XDP sees them; drivers refuse "
              "native XDP while it is on (mlx5, ixgbe, virtio_net) or XDP sees merged frames")
    fix = f"ethtool -K {interface} lro off rx-gro-hw off"
    if fixed:
        detail += f" ({', '.join(fixed)} cannot be changed by ethtool here)"
        fix += ("; a [fixed] feature is set by the host: for virtio_net turn guest offloads off "
                "in the hypervisor (libvirt <guest tso4='off' tso6='off' ecn='off' ufo='off'/>) "
                "or give the VM VIRTIO_NET_F_CTRL_GUEST_OFFLOADS")
    return Finding("offloads", Status.WARN, detail, fix)


def check_queues(interface: str, netns: str | None, cpus: int | None = None) -> Finding:
    cpus = cpus or os.cpu_count() or 1
    queues = parse_ethtool_channels(_command(["ethtool", "-l", interface], netns) or "")
    if queues is None:
        def read() -> int:
            from pyroute2 import IPRoute
            with IPRoute() as ipr:
                index = ipr.link_lookup(ifname=interface)[0]
                return ipr.link("get", index=index)[0].get_attr("IFLA_NUM_RX_QUEUES")
        queues = int(_in_netns(netns, read))
    detail = f"{queues} RX queue(s), {cpus} CPU(s)"
    if queues >= cpus:
        return Finding("RX queues", Status.OK, detail + ": every CPU can run the program")
    return Finding("RX queues", Status.INFO, detail + f": XDP runs on the CPUs that service RX "
                   f"queues, so at most {queues} CPU(s) balance",
                   f"ethtool -L {interface} combined {cpus} (if the NIC has them), and spread "
                   "the queues' IRQs over the CPUs")


def check_routing_sysctls(interface: str, netns: str | None) -> Finding:
    def read() -> tuple[str | None, ...]:
        return (_read_sysctl("net.ipv4.ip_forward"),
                _read_sysctl("net.ipv4.conf.all.rp_filter"),
                _read_sysctl(f"net.ipv4.conf.{interface}.rp_filter"))

    forward, rp_all, rp_dev = _in_netns(netns, read)
    return Finding("forwarding, rp_filter", Status.OK,
                   f"ip_forward = {forward}, rp_filter all = {rp_all}, {interface} = {rp_dev}: "
                   "balanced packets bypass both (XDP_TX). They matter on the backends: "
                   "rp_filter 0 or 2 where packets are decapsulated (docs/deploy.md)")


HOST_CHECKS: tuple[Callable[[], Finding], ...] = (
    check_privileges, check_kernel, check_jit, check_jit_hardening, check_bpffs, check_headers,
    check_bcc)
INTERFACE_CHECKS: tuple[Callable[[str, str | None], Finding], ...] = (
    check_driver, check_attached, check_mtu, check_offloads, check_queues, check_routing_sysctls)


def _guarded(name: str, check: Callable[[], Finding]) -> Finding:
    """A check that raised is itself a finding, so one broken check never hides the others."""
    try:
        return check()
    except Exception as e:  # noqa: BLE001
        return Finding(name, Status.WARN, f"check failed: {type(e).__name__}: {e}",
                       "run the check's command by hand; report the error if it persists")


def run_checks(interface: str | None = None, netns: str | None = None) -> list[Finding]:
    """Every host check, then (when `interface` is given) every interface check in `netns`."""
    findings = [_guarded(c.__name__.removeprefix("check_"), c) for c in HOST_CHECKS]
    if interface:
        exists = _guarded("interface", lambda: check_interface_exists(interface, netns))
        findings.append(exists)
        if exists.status == Status.OK:
            findings += [_guarded(c.__name__.removeprefix("check_"),
                                  functools.partial(c, interface, netns))
                         for c in INTERFACE_CHECKS]
    return findings


def render(findings: Sequence[Finding], width: int = 100) -> str:
    """One block per finding: status, check, what was seen, and (unless ok) "fix:", wrapped to
    `width` columns; then the counts per status."""
    name_w = max((len(f.name) for f in findings), default=0)
    indent = " " * (2 + 4 + 2 + name_w + 2)
    lines = []
    for f in findings:
        head = f"  {f.status.value.upper():<4}  {f.name:<{name_w}}  "
        lines += textwrap.wrap(f.detail, width, initial_indent=head, subsequent_indent=indent,
                               break_on_hyphens=False)
        if f.status != Status.OK and f.fix:
            lines += textwrap.wrap(f.fix, width, initial_indent=indent + "fix: ",
                                   subsequent_indent=indent + "     ", break_on_hyphens=False)
    counts = ", ".join(f"{sum(f.status == s for f in findings)} {s.value}" for s in Status)
    return "\n".join([*lines, "", f"  {counts}"])


def to_json(findings: Sequence[Finding]) -> str:
    return json.dumps([{**asdict(f), "status": f.status.value} for f in findings], indent=2)


def main(interface: str | None, netns: str | None, as_json: bool) -> int:
    """`lb doctor`: print the findings; returns the exit code (1 if any failed)."""
    findings = run_checks(interface, netns)
    print(to_json(findings) if as_json else render(findings))
    return exit_code(findings)
