"""Off loopback, every change needs the bearer token; reads do not; no token, no start."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from api_helpers import assert_problem, check, unchanged

from lb.lab.daemon import DaemonError, LabDaemon
from lb.lab.veth import VethLab
from lb.netns import in_netns
from lb.xdp import loader

TOKEN = "s3cret-token-for-tests"
# A second daemon in the lab's balancer namespace must not take the session daemon's veth:
# it attaches (generic mode) to that namespace's `lo`, whose next hop needs no resolving.
ON_LO = ["--api-host", "0.0.0.0", "--interface", "lo", "--xdp-mode", "generic",
         "--next-hop-mac", "02:00:00:00:00:01"]


def _detach_lo(lab: VethLab) -> None:
    with in_netns(lab.balancer.netns):
        loader.detach(1)  # lo is ifindex 1 in every namespace


@pytest.fixture(scope="module")
def secured(api_lab: VethLab) -> Iterator[LabDaemon]:
    """Module: `lb run --api-host 0.0.0.0` with LB_API_TOKEN, on the balancer namespace's lo.

    Cleanup: the daemon stopped, its pins and state removed, its program detached from lo.
    """
    try:
        with LabDaemon(api_lab, extra_args=ON_LO, env={"LB_API_TOKEN": TOKEN}) as d:
            yield d
    finally:
        _detach_lo(api_lab)


def _changes(vip_id: int) -> list[tuple[str, str, object]]:
    """One request of every state-changing kind, on VIP `vip_id` (which has 10.1.0.2)."""
    return [
        ("POST", "/vips", {"address": "10.100.0.12", "port": 80}),
        ("DELETE", f"/vips/{vip_id}", None),
        ("PUT", f"/vips/{vip_id}/flags", {"flags": ["no_conn_table"]}),
        ("POST", f"/vips/{vip_id}/backends", {"address": "10.1.1.2"}),
        ("PATCH", f"/vips/{vip_id}/backends/10.1.0.2", {"weight": 3}),
        ("DELETE", f"/vips/{vip_id}/backends/10.1.0.2", None),
        ("PUT", "/config", {"vips": []}),
    ]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", TOKEN,
                                           f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
                         ids=["none", "wrong", "no-scheme", "basic", "longer", "empty"])
def test_changes_without_the_right_token_are_401_and_change_nothing(
        secured: LabDaemon, authorization: str | None) -> None:
    good = {"Authorization": f"Bearer {TOKEN}"}
    client = secured.client
    check(client.put("/config", json={"vips": [{"address": "10.100.0.12", "port": 81,
                                                "backends": [{"address": "10.1.0.2"}]}]},
                     headers=good), 200)
    vip_id = check(client.get("/vips"), 200)[0]["id"]
    headers = {} if authorization is None else {"Authorization": authorization}
    with unchanged(secured):
        for method, path, body in _changes(vip_id):
            r = client.request(method, path, headers=headers,
                               **({} if body is None else {"json": body}))
            assert r.status_code == 401, f"{method} {path}: {r.status_code} {r.text}"
            assert r.headers.get("www-authenticate") == "Bearer"
            assert "token" in assert_problem(r)["detail"]


def test_changes_with_the_token_are_applied(secured: LabDaemon) -> None:
    client = httpx.Client(base_url=secured.url, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    with client:
        check(client.put("/config", json={"vips": [{"address": "10.100.0.12", "port": 81,
                                                    "backends": [{"address": "10.1.0.2"}]}]}),
              200)
        vip_id = check(client.get("/vips"), 200)[0]["id"]
        expected = [201, 204, 200, 201, 200, 204, 200]
        # Deleting the VIP comes second: run the VIP's own changes on a fresh one.
        fresh = check(client.post("/vips", json={"address": "10.100.0.13", "port": 80}), 201)
        check(client.post(f"/vips/{fresh['id']}/backends", json={"address": "10.1.0.2"}), 201)
        for (method, path, body), status in zip(_changes(vip_id), expected, strict=True):
            path = path.replace(f"/vips/{vip_id}/", f"/vips/{fresh['id']}/")
            r = client.request(method, path, **({} if body is None else {"json": body}))
            assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        assert check(client.get("/config"), 200) == {"vips": []}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/vips", "/config", "/stats",
                                  "/openapi.json"])
def test_reads_need_no_token(secured: LabDaemon, path: str) -> None:
    check(secured.client.get(path), 200)


def test_loopback_daemon_takes_changes_without_a_token(api) -> None:
    check(api.post("/vips", json={"address": "10.100.0.12", "port": 80}), 201)


@pytest.mark.parametrize("token", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_daemon_off_loopback_without_a_token_refuses_to_start(
        api_lab: VethLab, monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    monkeypatch.delenv("LB_API_TOKEN", raising=False)
    daemon = LabDaemon(api_lab, extra_args=ON_LO,
                       env={} if token is None else {"LB_API_TOKEN": token})
    try:
        with pytest.raises(DaemonError) as refused:
            daemon.start(timeout=30)
        assert daemon.process is not None and daemon.process.returncode == 2
        message = str(refused.value)
        assert "0.0.0.0 is not a loopback address" in message, message
        assert "LB_API_TOKEN" in message, message
        assert not daemon.pin_dir.exists(), "it loaded the program before refusing"
    finally:
        daemon.close()
        _detach_lo(api_lab)
