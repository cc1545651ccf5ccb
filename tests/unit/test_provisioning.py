"""The deployment and Vagrant lab files, tested where Vagrant cannot run.

shellcheck on every script; each provisioning script's dry run (DRY_RUN=1) prints the commands
that make its role work; the Vagrantfile parses and passes only arguments the scripts accept;
the systemd unit verifies; the example config holds every setting and loads; the BGP hook's
decisions. One test (root) runs backend.sh for real in a throwaway network namespace.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROVISION = ROOT / "vagrant" / "provision"
DEPLOY = ROOT / "deploy"
SCRIPTS = sorted([*(ROOT / "vagrant").rglob("*.sh"), *DEPLOY.rglob("*.sh")])


def dry_run(script: str, *args: str, netns: str | None = None) -> str:
    """stdout of `script` under DRY_RUN=1 (which must succeed, as non-root too)."""
    env = {**os.environ, "DRY_RUN": "1"}
    env.pop("LB_NETNS", None)
    argv = ["bash", str(PROVISION / script), *args, *(["--netns", netns] if netns else [])]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, f"{script} {args}: {done.stderr}"
    return done.stdout


# --- shell scripts -----------------------------------------------------------------------------
def test_there_are_scripts_to_check():
    names = {p.name for p in SCRIPTS}
    assert {"lib.sh", "common.sh", "backend.sh", "balancer.sh", "client.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck_passes(script):
    assert shutil.which("shellcheck"), "shellcheck is missing: scripts/install.sh installs it"
    done = subprocess.run(["shellcheck", "-x", "--source-path=SCRIPTDIR", str(script)],
                          capture_output=True, text=True, cwd=script.parent, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dry_run_changes_nothing_and_needs_no_root(tmp_path):
    # every write and command is printed: the files would go under LB_ETC, which stays empty
    env = {**os.environ, "DRY_RUN": "1", "LB_ETC": str(tmp_path / "etc")}
    subprocess.run(["bash", str(PROVISION / "balancer.sh")], check=True, env=env,
                   capture_output=True, timeout=30)
    assert not (tmp_path / "etc").exists()


def test_backend_dry_run_sets_up_direct_server_return():
    out = dry_run("backend.sh", "--interface", "eth1", "--vip", "10.100.0.1",
                  "--vip6", "fd00:100::1", "--name", "backend1")
    assert "+ ip addr replace 10.100.0.1/32 dev lo" in out
    assert "+ ip -6 addr replace fd00:100::1/128 dev lo nodad" in out
    for scope in ("all", "eth1"):
        assert f"+ sysctl -q -w net.ipv4.conf.{scope}.arp_ignore=1" in out
        assert f"+ sysctl -q -w net.ipv4.conf.{scope}.arp_announce=2" in out
    for line in ("+ modprobe ipip", "+ ip link set tunl0 up", "+ modprobe ip6_tunnel",
                 "+ ip link set ip6tnl0 up", "+ sysctl -q -w net.ipv4.conf.tunl0.rp_filter=0",
                 "+ sysctl -q -w net.ipv4.conf.all.rp_filter=0",
                 "+ systemctl enable --now lb-lab-http.service"):
        assert line in out
    assert "|   backend1" in out  # the page that names the backend


def test_backend_dry_run_in_a_namespace_prefixes_network_commands_only():
    out = dry_run("backend.sh", "--vip", "10.100.0.1", "--no-http", netns="be1")
    assert "+ ip netns exec be1 ip addr replace 10.100.0.1/32 dev lo" in out
    assert "+ ip netns exec be1 sysctl -q -w net.ipv4.conf.all.arp_ignore=1" in out
    assert "+ modprobe ipip" in out  # modules are global: never inside the namespace
    assert "http.server" not in out


def test_balancer_dry_run_writes_the_settings_starts_the_unit_and_configures_the_vip():
    out = dry_run("balancer.sh", "--interface", "eth1", "--router", "192.168.50.10",
                  "--vip", "10.100.0.1", "--backend", "192.168.50.11",
                  "--backend", "192.168.50.12")
    assert "+ write /etc/lb/lb.toml" in out
    toml_text = "\n".join(line[4:] for line in out.splitlines() if line.startswith("|   "))
    settings = tomllib.loads(toml_text)
    assert settings["interface"] == "eth1" and settings["next_hop_mac"]
    assert "+ ip neigh show 192.168.50.10 dev eth1" in out
    assert f"+ install -m 0644 {ROOT}/deploy/lb.service /etc/systemd/system/lb.service" in out
    assert "+ systemctl restart lb.service" in out
    assert f"+ {ROOT}/.venv/bin/lb doctor --interface eth1" in out
    put = next(line for line in out.splitlines() if "-X PUT" in line)
    document = json.loads(put.split("--data '", 1)[1].split("'", 1)[0])
    assert document == {"vips": [{"address": "10.100.0.1", "port": 80, "protocol": "tcp",
                                  "backends": [{"address": "192.168.50.11", "weight": 1},
                                               {"address": "192.168.50.12", "weight": 1}]}]}


def test_balancer_with_a_namespace_tells_the_daemon_to_enter_it():
    out = dry_run("balancer.sh", "--next-hop-mac", "02:00:00:00:00:01", netns="lbns")
    assert '|   netns = "lbns"' in out and '|   next_hop_mac = "02:00:00:00:00:01"' in out
    assert "ip neigh" not in out  # the MAC was given
    assert "--netns lbns" in out  # lb doctor looks inside the namespace


def test_client_dry_run_routes_the_vips_to_the_balancer_and_forwards():
    out = dry_run("client.sh", "--balancer", "192.168.50.2", "--vip-range", "10.100.0.0/24")
    assert "+ ip route replace 10.100.0.0/24 via 192.168.50.2 dev eth1 mtu 1460" in out
    assert "+ sysctl -q -w net.ipv4.ip_forward=1" in out
    assert "+ sysctl -q -w net.ipv4.conf.all.send_redirects=0" in out


def test_common_dry_run_runs_the_projects_install_step():
    out = dry_run("common.sh")
    assert f"+ bash {ROOT}/scripts/install.sh" in out


def test_unknown_argument_is_refused():
    done = subprocess.run(["bash", str(PROVISION / "client.sh"), "--bogus"], timeout=30,
                          env={**os.environ, "DRY_RUN": "1"}, capture_output=True, text=True)
    assert done.returncode != 0 and "unknown argument --bogus" in done.stderr


# --- Vagrantfile -------------------------------------------------------------------------------
# Evaluates the Vagrantfile with a stand-in `Vagrant` that records every call as JSON.
_RUBY_RECORDER = r"""
require "json"
class Rec
  def initialize(log, path) ; @log, @path = log, path ; end
  def method_missing(name, *args, **kw, &blk)
    path = @path + [name.to_s]
    @log << { "call" => path.join("."), "args" => args, "kw" => kw }
    blk.call(Rec.new(@log, path)) if blk
    Rec.new(@log, path)
  end
  def respond_to_missing?(*) = true
end
LOG = []
module Vagrant
  def self.configure(_version) = yield Rec.new(LOG, ["config"])
end
Dir.chdir(File.dirname(ARGV[0])) { load ARGV[0] }
puts JSON.generate(LOG)
"""


@pytest.fixture(scope="module")
def vagrant_calls() -> list[dict]:
    if not shutil.which("ruby"):
        pytest.skip("ruby is not installed: the Vagrantfile's syntax and arguments are not "
                    "checked (apt-get install ruby)")
    vagrantfile = ROOT / "vagrant" / "Vagrantfile"
    syntax = subprocess.run(["ruby", "-c", str(vagrantfile)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    done = subprocess.run(["ruby", "-e", _RUBY_RECORDER, str(vagrantfile)], timeout=30,
                          capture_output=True, text=True, env={**os.environ, "LB_CPUS": "2"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_vagrantfile_defines_client_balancer_and_two_backends(vagrant_calls):
    defined = [c["args"][0] for c in vagrant_calls if c["call"] == "config.vm.define"]
    assert defined == ["client", "backend1", "backend2", "lb"]


def test_vagrantfile_provisions_with_arguments_the_scripts_accept(vagrant_calls):
    provisions = [c for c in vagrant_calls if c["call"].endswith("vm.provision")]
    assert len(provisions) == 2 * 4  # common + the role's script, on each VM
    roles = []
    for p in provisions:
        script = p["kw"]["inline"].split("/opt/lb/vagrant/provision/", 1)[1].split()[0]
        assert (PROVISION / script).is_file(), script
        # the same script and arguments, dry: an argument it does not take would fail here
        dry_run(script, *p["kw"].get("args", []))
        roles.append(script)
    assert sorted(set(roles)) == ["backend.sh", "balancer.sh", "client.sh", "common.sh"]


# --- deploy/ -----------------------------------------------------------------------------------
def test_example_config_names_every_setting_and_loads(monkeypatch, tmp_path):
    from lb.control.settings import Settings, load_settings

    text = (DEPLOY / "lb.toml").read_text()
    commented = "\n".join(line[2:] if line.startswith("# ") and " = " in line else line
                          for line in text.splitlines())
    keys = set(tomllib.loads(commented))
    assert keys == set(Settings.model_fields), "deploy/lb.toml and Settings differ"
    for env in [k for k in os.environ if k.startswith("LB_")]:
        monkeypatch.delenv(env)
    monkeypatch.setenv("LB_CONFIG", "")  # load_settings sets it; undone after the test
    as_shipped = load_settings(DEPLOY / "lb.toml")
    assert as_shipped.interface == "eth0" and as_shipped.xdp_mode == "native"
    # every commented value is valid too (the defaults, or documented examples)
    everything = tmp_path / "lb.toml"
    everything.write_text(commented)
    assert load_settings(everything).mtu == 1540


def test_systemd_unit_runs_the_daemon_with_the_capabilities_it_needs(tmp_path):
    unit = (DEPLOY / "lb.service").read_text()
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in unit.splitlines()
             if "=" in line and not line.startswith("#")}
    assert lines["ExecStart"] == "/opt/lb/.venv/bin/lb run --config /etc/lb/lb.toml"
    assert lines["Restart"] == "on-failure" and lines["KillMode"] == "mixed"
    # either store: after the network and a local etcd, but etcd is not required (often remote)
    assert set(lines["After"].split()) >= {"network-online.target", "etcd.service"}
    assert "network-online.target" in lines["Wants"].split()
    assert "Requires" not in lines and "etcd" not in lines.get("BindsTo", "")
    assert set(lines["CapabilityBoundingSet"].split()) >= {
        "CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_PERFMON"}
    for breaks_bpf in ("ProtectKernelTunables", "MemoryDenyWriteExecute", "SystemCallFilter",
                       "PrivateNetwork"):
        assert breaks_bpf not in lines, breaks_bpf
    assert "Stopping does NOT detach" in unit
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is missing: the unit's syntax is not verified")
    # verify needs an existing ExecStart binary: this interpreter stands in for the venv's lb
    copy = tmp_path / "lb.service"
    copy.write_text(unit.replace("/opt/lb/.venv/bin/lb", sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _announce_module():
    spec = importlib.util.spec_from_file_location("lb_announce",
                                                  DEPLOY / "announce" / "lb-announce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vip(vid, address, *backends, port=80):
    return {"id": vid, "address": address, "port": port, "protocol": "tcp", "flags": [],
            "backends": [{"address": b, "weight": 1} for b in backends]}


def test_announce_hook_announces_vips_with_a_backend_that_is_not_down():
    hook = _announce_module()
    vips = [_vip(1, "10.100.0.1", "10.0.0.2"), _vip(2, "10.100.0.2"),
            _vip(3, "fd00:100::1", "fd00::2"), _vip(4, "10.100.0.3", "10.0.0.2", "10.0.0.3")]
    stats = {4: {"backends": [{"address": "10.0.0.2", "health": {"state": "down"}},
                              {"address": "10.0.0.3", "health": {"state": "down"}}]}}
    # no health data counts as up; no backend, or every backend down, is not announced
    assert hook.wanted_prefixes(vips, stats) == {"10.100.0.1/32", "fd00:100::1/128"}
    stats[4]["backends"][1]["health"]["state"] = "unknown"  # before a check's first verdict
    assert "10.100.0.3/32" in hook.wanted_prefixes(vips, stats)
    # one address, two ports: announced while either VIP can serve
    shared = [_vip(5, "10.100.0.9", port=80), _vip(6, "10.100.0.9", "10.0.0.2", port=443)]
    assert hook.wanted_prefixes(shared, {}) == {"10.100.0.9/32"}


def test_announce_hook_emits_only_changes_for_exabgp_and_splits_families_for_bird(tmp_path):
    hook = _announce_module()
    assert hook.exabgp_commands({"10.100.0.1/32", "10.100.0.2/32"},
                                {"10.100.0.2/32", "fd00:100::1/128"}) == [
        "withdraw route 10.100.0.1/32 next-hop self",
        "announce route fd00:100::1/128 next-hop self"]
    assert hook.apply_bird({"10.100.0.1/32", "fd00:100::1/128"}, tmp_path, birdc=None)
    assert "route 10.100.0.1/32 blackhole;" in (tmp_path / "lb-vips4.conf").read_text()
    assert "fd00" not in (tmp_path / "lb-vips4.conf").read_text()
    assert "route fd00:100::1/128 blackhole;" in (tmp_path / "lb-vips6.conf").read_text()
    assert not hook.apply_bird({"10.100.0.1/32", "fd00:100::1/128"}, tmp_path, birdc=None)


class _FakeApi(BaseHTTPRequestHandler):
    answers = {
        "/readyz": (200, {"ready": True, "problems": []}),
        "/vips": (200, [_vip(1, "10.100.0.1", "10.0.0.2"), _vip(2, "10.100.0.2", "10.0.0.3")]),
        "/vips/1/stats": (200, {"id": 1, "backends": [{"address": "10.0.0.2"}]}),
        "/vips/2/stats": (200, {"id": 2, "backends": [
            {"address": "10.0.0.3", "health": {"state": "down"}}]}),
    }

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, body = self.answers.get(self.path, (404, {"detail": "not found"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_announce_hook_reads_the_api_and_prints_exabgp_commands():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = subprocess.run([sys.executable, str(DEPLOY / "announce" / "lb-announce.py"),
                               "--api", f"http://127.0.0.1:{server.server_port}", "--once"],
                              capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["announce route 10.100.0.1/32 next-hop self"]


# --- for real, in a namespace ------------------------------------------------------------------
@pytest.mark.root
def test_backend_script_configures_a_namespace_for_direct_server_return():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    name = f"lbprov{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def ns(*argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", name, *argv], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "name", "eth1", "type", "veth",
                        "peer", "name", "eth1p"], check=True, timeout=30)
        env = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "LB_NETNS")}
        # no tunnel modules on the CI kernels: decapsulation is someone else's here
        done = subprocess.run(["bash", str(PROVISION / "backend.sh"), "--netns", name,
                               "--interface", "eth1", "--vip", "10.100.0.1",
                               "--vip6", "fd00:100::1", "--decap", "none", "--no-http"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        addresses = ns("ip", "addr", "show", "dev", "lo")
        assert "inet 10.100.0.1/32" in addresses and "inet6 fd00:100::1/128" in addresses

        def sysctl(key: str) -> str:
            return ns("sysctl", "-n", key).strip()

        assert sysctl("net.ipv4.conf.all.arp_ignore") == "1"
        assert sysctl("net.ipv4.conf.eth1.arp_ignore") == "1"
        assert sysctl("net.ipv4.conf.all.arp_announce") == "2"
        assert sysctl("net.ipv4.conf.eth1.rp_filter") == "0"
        # a second run is a no-op that succeeds (idempotent provisioning)
        again = subprocess.run(done.args, capture_output=True, text=True, env=env, timeout=60)
        assert again.returncode == 0, again.stderr
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=30)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True).stdout
