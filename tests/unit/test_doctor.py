"""`lb doctor`: its parsers, the MTU arithmetic, the exit code, and the real checks on this host."""

from __future__ import annotations

import json

import pytest

from lb import doctor
from lb.doctor import Feature, Finding, Status

ETHTOOL_I = """\
driver: mlx5_core
version: 6.1.0-13-amd64
firmware-version: 16.35.2000 (MT_0000000080)
expansion-rom-version:
bus-info: 0000:3b:00.0
supports-statistics: yes
"""

ETHTOOL_K = """\
Features for eth0:
rx-checksumming: on [fixed]
tx-checksumming: on
\ttx-checksum-ipv4: off [fixed]
generic-receive-offload: on
large-receive-offload: off [fixed]
rx-gro-hw: on [fixed]
rx-gro-list: off
highdma: on [fixed]
"""

ETHTOOL_L = """\
Channel parameters for eth0:
Pre-set maximums:
RX:\t\tn/a
TX:\t\tn/a
Other:\t\t1
Combined:\t63
Current hardware settings:
RX:\t\tn/a
TX:\t\tn/a
Other:\t\t1
Combined:\t8
"""

IP_LINK_NATIVE = """\
7: eth0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1540 xdp qdisc noqueue state UP
    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff link-netns lbt1-0-router promiscuity 0
    veth
    prog/xdp id 412 name xdp_balancer tag 5f4d2b0e8c2d1a9b jited addrgenmode eui64
"""

IP_LINK_GENERIC = IP_LINK_NATIVE.replace(" xdp qdisc", " xdpgeneric qdisc").replace(
    "prog/xdp id 412", "prog/xdp id 9")

IP_LINK_NONE = """\
4: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc pfifo_fast state UP mode DEFAULT
    link/ether 02:fc:00:00:00:01 brd ff:ff:ff:ff:ff:ff promiscuity 0 allmulti 0 minmtu 68
"""


def test_ethtool_driver_is_read_from_ethtool_i():
    info = doctor.parse_ethtool_info(ETHTOOL_I)
    assert info["driver"] == "mlx5_core"
    assert info["bus-info"] == "0000:3b:00.0"
    assert info["expansion-rom-version"] == ""


def test_ethtool_features_say_on_off_and_fixed():
    features = doctor.parse_ethtool_features(ETHTOOL_K)
    assert features["rx-gro-hw"] == Feature(on=True, fixed=True)
    assert features["large-receive-offload"] == Feature(on=False, fixed=True)
    assert features["generic-receive-offload"] == Feature(on=True, fixed=False)
    assert features["tx-checksum-ipv4"] == Feature(on=False, fixed=True)  # indented sub-feature
    assert "Features for eth0" not in features


def test_ethtool_channels_count_the_current_queues_not_the_maximum():
    assert doctor.parse_ethtool_channels(ETHTOOL_L) == 8
    separate = ETHTOOL_L.replace("RX:\t\tn/a\nTX:\t\tn/a\nOther:\t\t1\nCombined:\t8",
                                 "RX:\t\t4\nTX:\t\t4\nOther:\t\t0\nCombined:\t0")
    assert doctor.parse_ethtool_channels(separate) == 4
    assert doctor.parse_ethtool_channels("Channel parameters for lo:\n") is None


@pytest.mark.parametrize(("text", "expected"), [
    (IP_LINK_NATIVE, ("xdp", 412)),
    (IP_LINK_GENERIC, ("xdpgeneric", 9)),
    (IP_LINK_NONE, (None, None)),
])
def test_attached_mode_is_read_from_ip_link(text, expected):
    assert doctor.parse_ip_link_xdp(text) == expected


@pytest.mark.parametrize(("release", "expected"), [
    ("6.18.44-fc-v657", (6, 18)), ("5.15.0-91-generic", (5, 15)), ("5.4.0", (5, 4))])
def test_kernel_release_parsing(release, expected):
    assert doctor.parse_kernel_release(release) == expected


def test_old_kernel_fails_and_names_what_it_lacks():
    old = doctor.check_kernel("5.4.0-150-generic")
    assert old.status == Status.FAIL
    assert "BPF_F_MMAPABLE" in old.detail and old.fix
    assert doctor.check_kernel("6.1.0-13-amd64").status == Status.OK


@pytest.mark.parametrize(("mtu", "status"), [
    (1540, Status.OK),     # a full-size client packet + IPv6 outer header
    (9000, Status.OK),
    (1539, Status.WARN),   # IPv4 outer header only
    (1520, Status.WARN),
    (1519, Status.WARN),   # no headroom at all
    (1500, Status.WARN),
])
def test_mtu_headroom_is_20_bytes_for_ipv4_and_40_for_ipv6(mtu, status):
    assert doctor.mtu_headroom(mtu)[0] == status


def test_mtu_headroom_says_which_family_fits_and_the_largest_forwarded_packet():
    _, v4_only = doctor.mtu_headroom(1520)
    assert "IPv4 outer header" in v4_only and "IPv6 backends" in v4_only
    _, none = doctor.mtu_headroom(1500)
    assert "1480 (IPv4 backends) / 1460 (IPv6 backends)" in none
    # a smaller client MTU (e.g. behind a tunnel) needs less
    assert doctor.mtu_headroom(1500, client_mtu=1460)[0] == Status.OK


def test_capabilities_missing_from_a_mask_are_named():
    everything = "000001ffffffffff"
    assert doctor.missing_capabilities(everything) == []
    no_bpf_perfmon = f"{int(everything, 16) & ~(1 << 39) & ~(1 << 38):016x}"
    assert doctor.missing_capabilities(no_bpf_perfmon) == ["CAP_PERFMON", "CAP_BPF"]


def test_bpffs_must_be_a_bpf_mount_at_sys_fs_bpf():
    assert doctor.check_bpffs("sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw 0 0\n").status \
        == Status.OK
    missing = doctor.check_bpffs("sysfs /sys sysfs rw 0 0\n")
    assert missing.status == Status.FAIL and "mount -t bpf bpf /sys/fs/bpf" in missing.fix
    assert doctor.check_bpffs("tmpfs /sys/fs/bpf tmpfs rw 0 0\n").status == Status.FAIL


def test_missing_headers_fail_with_the_install_step(tmp_path, monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    finding = doctor.check_headers("6.99.0-test", modules=tmp_path)
    assert finding.status == Status.FAIL and "linux-headers" in finding.fix
    (tmp_path / "6.99.0-test/build/include/linux").mkdir(parents=True)
    assert doctor.check_headers("6.99.0-test", modules=tmp_path).status == Status.FAIL
    (tmp_path / "6.99.0-test/build/include/linux/kconfig.h").touch()
    assert doctor.check_headers("6.99.0-test", modules=tmp_path).status == Status.OK


def test_only_a_failure_makes_the_exit_code_1():
    ok = Finding("a", Status.OK, "fine")
    warn = Finding("b", Status.WARN, "slow", "do this")
    info = Finding("c", Status.INFO, "fyi", "maybe that")
    fail = Finding("d", Status.FAIL, "broken", "fix it")
    assert doctor.exit_code([]) == 0
    assert doctor.exit_code([ok, warn, info]) == 0
    assert doctor.exit_code([ok, warn, fail]) == 1


def test_render_shows_every_finding_and_the_fix_of_those_not_ok():
    findings = [Finding("kernel", Status.OK, "6.18 >= 5.11", "never shown"),
                Finding("offloads", Status.WARN, "rx-gro-hw on", "ethtool -K eth0 rx-gro-hw off")]
    text = doctor.render(findings)
    assert "OK    kernel" in text and "WARN  offloads" in text
    assert "fix: ethtool -K eth0 rx-gro-hw off" in text and "never shown" not in text
    assert "1 ok, 0 info, 1 warn, 0 fail" in text
    assert json.loads(doctor.to_json(findings))[1] == {
        "name": "offloads", "status": "warn", "detail": "rx-gro-hw on",
        "fix": "ethtool -K eth0 rx-gro-hw off"}


def test_a_check_that_raises_becomes_a_warning_not_a_crash():
    def broken() -> Finding:
        raise RuntimeError("boom")

    finding = doctor._guarded("broken", broken)
    assert finding.status == Status.WARN and "boom" in finding.detail and finding.fix


def test_real_host_checks_each_say_how_to_fix_what_is_not_ok():
    findings = doctor.run_checks(interface=None, netns=None)
    names = [f.name for f in findings]
    assert names == ["privileges", "kernel", "bpf JIT", "bpf JIT hardening", "bpffs",
                     "kernel headers", "bcc"]
    for f in findings:
        assert isinstance(f.status, Status) and f.detail, f
        assert f.status == Status.OK or f.fix, f"{f.name} is {f.status} without a fix: {f}"
    assert doctor.exit_code(findings) == int(any(f.status == Status.FAIL for f in findings))


def test_cli_unknown_interface_is_one_failure_and_exit_1(capsys):
    from lb.cli import main

    assert main(["doctor", "--interface", "no-such-if0", "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)
    failed = [f for f in findings if f["status"] == "fail"]
    assert [f["name"] for f in failed if f["name"] == "interface"] == ["interface"]
    assert all(f["fix"] for f in failed)
