"""End to end: configured through REST only, checked on the wire of the veth lab.

Every expectation comes from the configuration alone (Maglev ring of the weights, flow hash
mirror: api_helpers.predict); every observation from scapy captures on the router's side of
the backends' links, or from the backend that answered a real HTTP request.
"""

from __future__ import annotations

from collections import Counter

import pytest
from api_helpers import check, create_vip, predict, route_flows

from lb.lab.veth import VethLab

FLOWS = 150


@pytest.mark.parametrize(("vip_family", "backend_family", "protocol"),
                         [(4, 4, "udp"), (4, 6, "tcp"), (6, 6, "udp"), (6, 6, "tcp"),
                          (6, 4, "tcp")],
                         ids=["4in4-udp", "4in6-tcp", "6in6-udp", "6in6-tcp", "6in4-tcp"])
def test_each_flow_reaches_the_backend_the_configuration_names_encapsulated(
        api, lb_api, api_lab: VethLab, vip_family: int, backend_family: int, protocol: str) -> None:
    lab = api_lab
    vip = (lab.vips_v4() if vip_family == 4 else lab.vips_v6())[2]
    port = 7700 + backend_family
    weights = {(b.v4 if backend_family == 4 else b.v6): w
               for b, w in zip(lab.backends, (1, 2, 3), strict=True)}
    vip_id = create_vip(lb_api, vip, port, protocol, backends=weights)
    client = lab.client.v4 if vip_family == 4 else lab.client.v6
    sports = range(26000, 26000 + FLOWS)
    stats_before = check(api.get(f"/vips/{vip_id}/stats"), 200)

    routed = route_flows(lab, vip, port, sports, protocol)
    expected = {s: predict(weights, client, vip, s, port, protocol) for s in sports}
    wrong = {s: (routed[s], expected[s]) for s in sports if routed[s] != expected[s]}
    assert not wrong, f"{len(wrong)} flows reached another backend (got, expected): " \
                      f"{dict(list(wrong.items())[:5])}"
    spread = Counter(routed.values())
    assert set(spread) == {str(a) for a in weights}, spread
    # The API's counters saw the same packets.
    stats = check(api.get(f"/vips/{vip_id}/stats"), 200)
    assert stats["packets"] - stats_before["packets"] == FLOWS
    assert {b["address"]: b["packets"] - a["packets"] for b, a in
            zip(stats["backends"], stats_before["backends"], strict=True)} == dict(spread)


def test_weight_change_and_removal_move_new_flows_as_configured(
        api, lb_api, api_lab: VethLab) -> None:
    lab = api_lab
    vip, port = lab.vips_v4()[3], 7800
    weights = {b.v4: 1 for b in lab.backends}
    vip_id = create_vip(lb_api, vip, port, "udp", backends=weights)
    client = lab.client.v4

    def check_new_flows(first: int) -> dict[int, str]:
        sports = range(first, first + FLOWS)  # new flows: none is in the connection table
        routed = route_flows(lab, vip, port, sports)
        assert routed == {s: predict(weights, client, vip, s, port, "udp") for s in sports}
        return routed

    check_new_flows(27000)
    heavy = lab.backends[2].v4
    check(api.patch(f"/vips/{vip_id}/backends/{heavy}", json={"weight": 6}), 200)
    weights[heavy] = 6
    share = Counter(check_new_flows(27200).values())
    assert share[str(heavy)] > FLOWS / 2, share

    removed = lab.backends[0].v4
    check(api.delete(f"/vips/{vip_id}/backends/{removed}"), 204)
    del weights[removed]
    assert str(removed) not in check_new_flows(27400).values()

    check(api.post(f"/vips/{vip_id}/backends", json={"address": str(removed), "weight": 1}),
          201)
    weights[removed] = 1
    assert str(removed) in check_new_flows(27600).values()


@pytest.mark.parametrize("family", [4, 6])
def test_http_through_a_rest_configured_vip_is_served_by_the_predicted_backend(
        api, lb_api, api_lab: VethLab, family: int) -> None:
    """Real TCP connections (the kernel picks each source port): the backend that answers is
    the one the configuration names for that connection's flow."""
    lab = api_lab
    vip = lab.vips_v4()[1] if family == 4 else lab.vips_v6()[0]
    weights = {(b.v4 if family == 4 else b.v6): w
               for b, w in zip(lab.backends, (3, 1, 2), strict=True)}
    create_vip(lb_api, vip, 80, "tcp", backends=weights)
    client = lab.client.v4 if family == 4 else lab.client.v6
    served = Counter()
    for _ in range(30):
        conn = lab.http_connection(vip, 80)
        try:
            sport = conn.sock.getsockname()[1]
            conn.request("GET", "/", headers={"Connection": "close"})
            name = conn.getresponse().read().decode().strip()
        finally:
            conn.close()
        address = predict(weights, client, vip, sport, 80, "tcp")
        expected = next(b.name for b in lab.backends if str(b.v4 if family == 4 else b.v6)
                        == address)
        assert name == expected, f"source port {sport}: served by {name}, expected {expected}"
        served[name] += 1
    assert len(served) > 1, served
