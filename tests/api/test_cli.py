"""The `lb` API commands (lb/client_cli.py) against a real daemon: output, --json, exit codes.

Most tests run `lb.cli.main([...])` in-process (LB_API points at the session daemon, output
captured by capsys); one runs `python -m lb` as a subprocess to see the exit codes a shell
sees. The `api` fixture empties the desired state before and after each test. Token and
readiness tests use a private daemon on a small lab of their own (module scope), so the
session daemon is never restarted or detached here.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from api_helpers import unchanged

from lb.cli import main
from lb.control.model import ConfigDocument
from lb.exitcodes import ExitCode
from lb.lab.daemon import LabDaemon, free_port
from lb.lab.namespaces import remove_leftovers
from lb.lab.veth import VethLab

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-test-token"
# Namespace prefix of the private lab (leftovers of dead runs are removed first).
PRIVATE_LAB_PREFIX = "lbcli"


@dataclass
class Run:
    """What one `lb ...` did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


Lb = Callable[..., Run]


def _run_main(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> Run:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse: --help and usage errors
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return Run(code, out, err)


@pytest.fixture
def lb(api: httpx.Client, daemon: LabDaemon, capsys: pytest.CaptureFixture[str],
       monkeypatch: pytest.MonkeyPatch) -> Lb:
    """`lb(*argv)` runs the CLI in-process against the session daemon (through LB_API)."""
    monkeypatch.setenv("LB_API", daemon.url)
    monkeypatch.delenv("LB_API_TOKEN", raising=False)
    return lambda *argv: _run_main(capsys, argv)


@pytest.fixture(scope="module")
def private_daemon() -> Iterator[LabDaemon]:
    """Module: a daemon whose changes need TOKEN, on a one-backend lab of its own.

    Cleanup: daemon stopped, its pins and state removed; lab namespaces deleted.
    """
    remove_leftovers(PRIVATE_LAB_PREFIX)
    with VethLab(n_backends=1, rx_queues=1, prefix=PRIVATE_LAB_PREFIX) as lab, \
            LabDaemon(lab, env={"LB_API_TOKEN": TOKEN}) as d:
        yield d


def _vip_id(run: Run) -> int:
    assert run.code == ExitCode.OK, run.err
    return run.json()["id"]


# --- status ------------------------------------------------------------------------------
def test_status_says_ready_and_json_is_the_readyz_body(lb: Lb, api: httpx.Client) -> None:
    run = lb("status")
    assert run.code == ExitCode.OK, run.err
    assert run.out.splitlines()[0].split() == ["ready", "yes"]
    assert "xdp mode" in run.out and "interface" in run.out

    run = lb("status", "--json")
    assert run.code == ExitCode.OK
    assert run.json() == api.get("/readyz").json()


def test_status_exits_4_and_names_the_problem_when_the_program_is_detached(
        private_daemon: LabDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    balancer = private_daemon.lab.balancer
    detach = subprocess.run([sys.executable, "-m", "lb", "detach", "--netns", balancer.netns,
                             "--interface", balancer.ifname], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    try:
        assert detach.returncode == 0, detach.stderr
        run = _run_main(capsys, ("status", "--api", private_daemon.url))
        assert run.code == ExitCode.SERVER
        assert run.out.splitlines()[0].split() == ["ready", "NO"]
        assert f"problem: no XDP program on {balancer.ifname}" in run.out

        run = _run_main(capsys, ("status", "--api", private_daemon.url, "--json"))
        assert run.code == ExitCode.SERVER
        assert run.json()["ready"] is False
    finally:
        private_daemon.restart()  # attaches again


# --- VIPs --------------------------------------------------------------------------------
def test_vip_add_list_show_remove(lb: Lb, api: httpx.Client) -> None:
    run = lb("vip", "add", "10.100.0.1", "80")
    assert run.code == ExitCode.OK, run.err
    assert run.out.startswith("created VIP ")
    vip_id = int(run.out.split()[2].rstrip(":"))
    assert "10.100.0.1 80/tcp" in run.out
    v6 = _vip_id(lb("vip", "add", "fd00:100::1", "53", "--protocol", "udp",
                    "--flag", "hash_no_src_port", "--json"))

    run = lb("vip", "list")
    assert run.code == ExitCode.OK
    header, rule, *rows = run.out.splitlines()
    assert header.split() == ["id", "address", "port", "protocol", "flags", "backends"]
    assert [r.split() for r in rows] == [
        [str(vip_id), "10.100.0.1", "80", "tcp", "-", "0"],
        [str(v6), "fd00:100::1", "53", "udp", "hash_no_src_port", "0"]]
    assert lb("vip", "list", "--json").json() == api.get("/vips").json()

    run = lb("vip", "show", str(v6))
    assert run.code == ExitCode.OK
    assert run.out.splitlines()[:2] == [f"VIP {v6}: fd00:100::1 53/udp",
                                        "flags: hash_no_src_port"]
    assert "no backends" in run.out
    assert lb("vip", "show", str(v6), "--json").json() == api.get(f"/vips/{v6}").json()

    run = lb("vip", "remove", str(vip_id))
    assert (run.code, run.out) == (ExitCode.OK, f"removed VIP {vip_id}\n")
    run = lb("vip", "remove", str(v6), "--json")
    assert (run.code, run.out) == (ExitCode.OK, "")  # 204: no body to print
    assert api.get("/vips").json() == []
    assert lb("vip", "list").out == "no VIPs (add one: lb vip add ADDRESS PORT)\n"


def test_vip_flags_shows_sets_and_clears(lb: Lb, api: httpx.Client) -> None:
    vip_id = _vip_id(lb("vip", "add", "10.100.0.1", "80", "--json"))
    assert lb("vip", "flags", str(vip_id)).out == f"VIP {vip_id} flags: none\n"

    run = lb("vip", "flags", str(vip_id), "no_conn_table", "hash_no_src_port")
    assert run.code == ExitCode.OK, run.err
    assert run.out == f"VIP {vip_id} flags: hash_no_src_port,no_conn_table\n"
    assert api.get(f"/vips/{vip_id}").json()["flags"] == ["hash_no_src_port", "no_conn_table"]

    run = lb("vip", "flags", str(vip_id), "--clear", "--json")
    assert run.code == ExitCode.OK
    assert run.json() == api.get(f"/vips/{vip_id}").json()
    assert run.json()["flags"] == []


# --- backends ----------------------------------------------------------------------------
def _configured(api: httpx.Client, vip_id: str) -> list[dict[str, object]]:
    """The VIP's backends as configured (address, weight), from GET /vips/{id}/backends."""
    return [{"address": b["address"], "weight": b["weight"]}
            for b in api.get(f"/vips/{vip_id}/backends").json()]


def test_backend_add_list_weight_remove(lb: Lb, api: httpx.Client) -> None:
    vip_id = str(_vip_id(lb("vip", "add", "10.100.0.1", "80", "--json")))
    run = lb("backend", "add", vip_id, "10.1.0.2", "--weight", "3")
    assert run.code == ExitCode.OK, run.err
    assert run.out == f"added backend 10.1.0.2 (weight 3) to VIP {vip_id}\n"
    assert lb("backend", "add", vip_id, "10.1.1.2", "--json").json() == {
        "address": "10.1.1.2", "weight": 1, "drain": False}

    run = lb("backend", "list", vip_id)
    header, _, *rows = run.out.splitlines()
    assert header.split() == ["backend", "weight", "weight", "share"]
    assert [r.split() for r in rows] == [["10.1.0.2", "3", "75.0%"],
                                         ["10.1.1.2", "1", "25.0%"]]
    assert (lb("backend", "list", vip_id, "--json").json()
            == api.get(f"/vips/{vip_id}/backends").json())

    run = lb("backend", "weight", vip_id, "10.1.1.2", "5")
    assert run.out == f"backend 10.1.1.2 of VIP {vip_id}: weight 5\n"
    assert _configured(api, vip_id)[1] == {"address": "10.1.1.2", "weight": 5}
    assert "10.1.1.2       5" in lb("vip", "show", vip_id).out

    run = lb("backend", "remove", vip_id, "10.1.0.2")
    assert run.code == ExitCode.OK
    assert run.out.startswith(f"removed backend 10.1.0.2 from VIP {vip_id}")
    assert _configured(api, vip_id) == [{"address": "10.1.1.2", "weight": 5}]


def test_backend_commands_take_ipv6_addresses(lb: Lb, api: httpx.Client) -> None:
    vip_id = str(_vip_id(lb("vip", "add", "fd00:100::1", "80", "--json")))
    assert lb("backend", "add", vip_id, "fd00:1::2").code == ExitCode.OK
    assert lb("backend", "weight", vip_id, "fd00:1::2", "7").code == ExitCode.OK
    assert _configured(api, vip_id) == [{"address": "fd00:1::2", "weight": 7}]
    assert lb("backend", "remove", vip_id, "fd00:1::2").code == ExitCode.OK
    assert api.get(f"/vips/{vip_id}/backends").json() == []


# --- stats -------------------------------------------------------------------------------
def test_stats_tables_after_traffic(lb: Lb, api: httpx.Client, daemon: LabDaemon) -> None:
    lab = daemon.lab
    vip = lab.vips_v4()[0]
    vip_id = str(_vip_id(lb("vip", "add", str(vip), "80", "--json")))
    for b in lab.backends:
        assert lb("backend", "add", vip_id, str(b.v4)).code == ExitCode.OK
    for _ in range(12):
        lab.http_get(vip, 80)

    run = lb("stats", vip_id)
    assert run.code == ExitCode.OK, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith(f"VIP {vip_id}: {vip} 80/tcp: ")
    assert lines[1].split() == ["backend", "weight", "ring", "share", "packets", "bytes",
                                "packet", "share"]
    rows = {line.split()[0]: line.split() for line in lines[3:3 + len(lab.backends)]}
    assert set(rows) == {str(b.v4) for b in lab.backends}
    stats = api.get(f"/vips/{vip_id}/stats").json()
    sent = sum(b["packets"] for b in stats["backends"])
    assert sent > 0
    for b in stats["backends"]:
        assert rows[b["address"]][-1] == f"{b['packets'] / sent:.1%}"
    assert sum(float(r[-1].rstrip("%")) for r in rows.values()) == pytest.approx(100, abs=0.2)
    json_stats = lb("stats", vip_id, "--json").json()
    assert [b["address"] for b in json_stats["backends"]] == [str(b.v4) for b in lab.backends]
    assert json_stats.keys() == stats.keys()

    run = lb("stats")
    assert run.code == ExitCode.OK
    for title in ("packets by verdict", "connection table", "passed to the kernel, by reason",
                  "dropped, by reason"):
        assert title in run.out.splitlines()
    hit = next(line for line in run.out.splitlines() if line.split()[:1] == ["hit"])
    assert int(hit.split()[1].replace(",", "")) > 0
    assert "hit ratio" in run.out
    global_stats = lb("stats", "--json").json()
    assert global_stats.keys() == api.get("/stats").json().keys()
    zero_drops = [name for name, n in global_stats["drop_reasons"].items() if n == 0]
    dropped = run.out.split("dropped, by reason")[1]
    assert not any(f"  {name} " in dropped for name in zero_drops), "zero reasons are hidden"


# --- config ------------------------------------------------------------------------------
def test_config_export_then_import_round_trips(lb: Lb, api: httpx.Client,
                                               tmp_path: Path) -> None:
    v1 = str(_vip_id(lb("vip", "add", "10.100.0.1", "80", "--flag", "no_conn_table", "--json")))
    lb("backend", "add", v1, "10.1.0.2", "--weight", "2")
    lb("backend", "add", v1, "10.1.1.2")
    lb("vip", "add", "fd00:100::1", "443")
    saved = api.get("/config").json()

    run = lb("config", "export")
    assert run.code == ExitCode.OK
    assert run.json() == saved
    path = tmp_path / "lb.json"
    run = lb("config", "export", str(path))
    assert run.out == f"exported 2 VIPs with 2 backends to {path}\n"
    assert json.loads(path.read_text()) == saved

    assert api.put("/config", json={"vips": []}).status_code == 200
    run = lb("config", "import", str(path))
    assert run.code == ExitCode.OK, run.err
    assert run.out.startswith(f"imported {path}: 2 VIPs added, 0 removed, 0 changed; ")
    assert api.get("/config").json() == saved

    run = lb("config", "import", str(path))
    assert run.out == f"no change: the daemon already holds the configuration in {path}\n"
    run = lb("config", "import", str(path), "--json")
    assert run.json() == {"vips_added": 0, "vips_removed": 0, "vips_changed": 0,
                          "ring_slots_written": 0}


def test_config_import_reads_stdin(lb: Lb, api: httpx.Client,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    document = {"vips": [{"address": "10.100.0.2", "port": 8080, "protocol": "tcp",
                          "flags": [], "backends": [{"address": "10.1.2.2", "weight": 1}]}]}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(document)))
    run = lb("config", "import", "-")
    assert run.code == ExitCode.OK, run.err
    assert "1 VIPs added" in run.out
    assert api.get("/config").json() == ConfigDocument.model_validate(document).model_dump(
        mode="json")


# --- errors and exit codes ---------------------------------------------------------------
def test_422_prints_each_field_error_on_its_own_line(lb: Lb, api: httpx.Client) -> None:
    run = lb("vip", "add", "10.100.0.3", "70000", "--protocol", "sctp", "--flag", "bogus")
    assert run.code == ExitCode.REFUSED
    lines = run.err.splitlines()
    assert lines[0] == "lb vip add: the API refused (422 Unprocessable Entity):"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["port", "protocol",
                                                                  "flags[0]"]
    assert "  port: Input should be less than or equal to 65535" in lines
    assert run.out == ""
    assert api.get("/vips").json() == []

    vip_id = str(_vip_id(lb("vip", "add", "10.100.0.1", "80", "--json")))
    run = lb("backend", "add", vip_id, "10.1.0.2", "--weight", "0")
    assert run.code == ExitCode.REFUSED
    assert "  weight: Input should be greater than or equal to 1" in run.err.splitlines()
    run = lb("backend", "weight", vip_id, "not-an-address", "2")
    assert run.code == ExitCode.REFUSED
    assert "  address: 'not-an-address' is not an IP address" in run.err.splitlines()


def test_invalid_config_is_refused_with_its_field_and_changes_nothing(
        lb: Lb, daemon: LabDaemon, tmp_path: Path) -> None:
    lb("vip", "add", "10.100.0.1", "80")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"vips": [{"address": "10.100.0.2", "port": 80, "backends": [
        {"address": "10.1.0.2"}, {"address": "10.1.0.2"}]}]}))
    with unchanged(daemon):
        run = lb("config", "import", str(path))
    assert run.code == ExitCode.REFUSED
    assert "  vips[0]: backends[1].address: 10.1.0.2 is listed twice" in run.err.splitlines()


def test_404_and_409_exit_1_with_the_api_message(lb: Lb) -> None:
    run = lb("vip", "show", "999")
    assert run.code == ExitCode.REFUSED
    assert run.err == "lb vip show: the API refused (404 Not Found): no VIP with id 999\n"
    lb("vip", "add", "10.100.0.1", "80")
    run = lb("vip", "add", "10.100.0.1", "80")
    assert run.code == ExitCode.REFUSED
    assert "(409 Conflict): VIP 10.100.0.1 80/tcp exists" in run.err
    assert lb("stats", "999").code == ExitCode.REFUSED


def test_capacity_error_exits_4(lb: Lb, api: httpx.Client, tmp_path: Path) -> None:
    # One VIP more than the lab daemon's data plane holds (LabDaemon's max_vips).
    vips = [{"address": f"10.100.1.{i}", "port": 80} for i in range(1, 18)]
    path = tmp_path / "too-many.json"
    path.write_text(json.dumps({"vips": vips}))
    run = lb("config", "import", str(path))
    assert run.code == ExitCode.SERVER, run.err
    assert "(507 Insufficient Storage)" in run.err
    assert api.get("/vips").json() == []


@pytest.mark.parametrize("argv", [
    ("vip",),                                         # no action
    ("vip", "add", "10.100.0.1"),                     # no PORT
    ("vip", "show", "one"),                           # VIP_ID is not a number
    ("backend", "weight", "1", "10.1.0.2"),           # no WEIGHT
    ("vip", "flags", "1", "no_conn_table", "--clear"),  # set and clear at once
    ("vip", "list", "--api", "127.0.0.1:8470"),      # no scheme
], ids=lambda argv: " ".join(argv))
def test_usage_errors_exit_2(lb: Lb, argv: tuple[str, ...]) -> None:
    run = lb(*argv)
    assert run.code == ExitCode.USAGE
    assert "usage: lb" in run.err


def test_unreadable_or_non_json_file_exits_2(lb: Lb, tmp_path: Path) -> None:
    run = lb("config", "import", str(tmp_path / "missing.json"))
    assert run.code == ExitCode.USAGE
    assert "cannot read" in run.err and "No such file" in run.err
    path = tmp_path / "broken.json"
    path.write_text('{"vips": [')
    run = lb("config", "import", str(path))
    assert run.code == ExitCode.USAGE
    assert f"{path} is not JSON" in run.err


def test_unreachable_api_exits_3_with_a_hint(lb: Lb) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = lb("vip", "list", "--api", url)
    assert run.code == ExitCode.UNREACHABLE
    assert f"cannot reach the API at {url}" in run.err
    assert "`lb run`" in run.err and "--api" in run.err


def test_an_api_that_does_not_answer_exits_3_after_the_timeout(lb: Lb) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        run = lb("status", "--api", url, "--timeout", "0.3")
    assert run.code == ExitCode.UNREACHABLE
    assert "no answer within 0.3 s" in run.err


def test_changes_need_the_token_when_the_daemon_has_one(
        private_daemon: LabDaemon, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LB_API_TOKEN", raising=False)
    url = private_daemon.url
    try:
        run = _run_main(capsys, ("vip", "add", "10.100.0.1", "80", "--api", url))
        assert run.code == ExitCode.REFUSED
        assert "(401 Unauthorized)" in run.err
        assert "hint: pass --token or set LB_API_TOKEN" in run.err
        assert _run_main(capsys, ("vip", "list", "--api", url)).code == ExitCode.OK

        run = _run_main(capsys, ("vip", "add", "10.100.0.1", "80", "--api", url,
                                 "--token", TOKEN))
        assert run.code == ExitCode.OK, run.err
        vip_id = run.out.split()[2].rstrip(":")
        monkeypatch.setenv("LB_API_TOKEN", TOKEN)  # the default of --token
        run = _run_main(capsys, ("vip", "remove", vip_id, "--api", url))
        assert run.code == ExitCode.OK, run.err
        assert private_daemon.client.get("/vips").json() == []
    finally:
        private_daemon.client.put("/config", json={"vips": []},
                                  headers={"Authorization": f"Bearer {TOKEN}"})


def test_exit_codes_as_a_shell_sees_them(api: httpx.Client, daemon: LabDaemon) -> None:
    def lb(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lb", *argv], cwd=ROOT, text=True,
                              capture_output=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "LB_API": daemon.url})

    added = lb("vip", "add", "10.100.0.1", "80", "--json")
    assert added.returncode == ExitCode.OK, added.stderr
    assert json.loads(added.stdout) == api.get("/vips").json()[0]
    assert lb("vip", "add", "10.100.0.1", "80").returncode == ExitCode.REFUSED
    assert lb("vip", "add", "10.100.0.1").returncode == ExitCode.USAGE
    unreachable = lb("status", "--api", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == ExitCode.UNREACHABLE
    assert unreachable.stdout == ""


# --- help --------------------------------------------------------------------------------
COMMANDS = [("status",), ("vip",), ("vip", "list"), ("vip", "add"), ("vip", "show"),
            ("vip", "remove"), ("vip", "flags"), ("backend",), ("backend", "list"),
            ("backend", "add"), ("backend", "weight"), ("backend", "remove"), ("stats",),
            ("config",), ("config", "export"), ("config", "import")]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_help_ends_with_examples_and_exit_codes(
        command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_main(capsys, (*command, "--help"))
    assert run.code == ExitCode.OK
    examples = run.out.split("examples:\n")[1]
    assert f"  lb {' '.join(command)}" in examples
    assert "exit codes:" in examples


def test_top_level_help_lists_the_api_commands_and_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_main(capsys, ("--help",))
    assert run.code == ExitCode.OK
    for command in ("status", "vip", "backend", "stats", "config"):
        assert f"  lb {command} " in run.out
    assert "exit codes:" in run.out
