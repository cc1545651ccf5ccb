"""A real TCP connection (the kernel's sockets on both ends) through the balancer, answered by
direct server return: the client's packets cross the balancer, the backend's replies do not."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from lb.control.service import Balancer
from lb.lab.veth import VethLab
from lb.lab.waits import settle
from lb.xdp.maps import Dataplane


def _l3(frame):
    ip = frame.payload
    return ip if isinstance(ip, (IP, IPv6)) else None


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_http_request_to_vip_is_answered_by_a_backend_directly(
        lab: VethLab, dataplane: Dataplane, balancer: Balancer, make_vip, http_vips,
        family: int) -> None:
    vip = http_vips[0 if family == 4 else 1]
    addresses = {(b.v4 if family == 4 else b.v6): b for b in lab.backends}
    _, state = make_vip(vip, 80, "tcp", dict.fromkeys(addresses, 1))

    def on_flow(frame) -> bool:
        ip = _l3(frame)
        return ip is not None and TCP in frame and str(vip) in (ip.src, ip.dst)

    def on_balancer_link(frame) -> bool:
        return _l3(frame) is not None

    with lab.capture(lab.client, lfilter=on_flow) as at_client, \
            lab.capture("router", lab.balancer.router_ifname, on_balancer_link) as at_balancer:
        conn = lab.http_connection(vip, 80)
        client_port = conn.sock.getsockname()[1]
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        settle(lambda: (len(at_client.frames), len(at_balancer.frames)), quiet=0.3)

    assert response.status == 200
    served_by = next((b for b in lab.backends if body == f"{b.name}\n"), None)
    assert served_by is not None, f"unexpected body {body!r}"

    sent = [f for f in at_client.frames
            if f.direction == "out" and f[TCP].sport == client_port and f[TCP].dport == 80]
    replies = [f for f in at_client.frames
               if f.direction == "in" and _l3(f).src == str(vip) and f[TCP].dport == client_port]
    assert sent and replies, f"client sent {len(sent)}, received {len(replies)}"

    to_balancer = [f for f in at_balancer.frames if f.direction == "out"]
    from_balancer = [f for f in at_balancer.frames if f.direction == "in"]
    # Only the client's packets of this flow reach the balancer; no reply ever crosses it.
    for frame in to_balancer:
        ip = _l3(frame)
        assert (ip.src, ip.dst, frame[TCP].sport) == (str(lab.client.v4 if family == 4 else
                                                          lab.client.v6), str(vip), client_port), \
            f"unexpected frame to the balancer: {frame.summary()}"
    assert not [f for f in at_balancer.frames if str(vip) == _l3(f).src], \
        "a reply from the VIP crossed the balancer's link"
    assert len(to_balancer) == len(sent), \
        f"client sent {len(sent)} packets, {len(to_balancer)} reached the balancer"
    # Each came back encapsulated toward the backend that answered, and nothing else did.
    backend_address = next(a for a, b in addresses.items() if b is served_by)
    for frame in from_balancer:
        ip = _l3(frame)
        assert ip.dst == str(backend_address) and (ip.proto if family == 4 else ip.nh) == \
            (4 if family == 4 else 41), f"unexpected frame from the balancer: {frame.summary()}"
    assert len(from_balancer) == len(sent)
    # The balancer's own counters agree: every client packet, to one backend, nothing more.
    assert dataplane.vip_stats(state.num)[0] == len(sent)
    assert dataplane.backend_stats(balancer.backend_index(backend_address))[0] == len(sent)
    assert dataplane.counters()["tx"] == len(sent)
    print(f"\n{served_by.name} answered; client sent {len(sent)} packets, all through the "
          f"balancer; {len(replies)} replies reached the client without crossing it")
