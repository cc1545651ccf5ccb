#!/usr/bin/env bash
# A backend for direct server return: the VIPs on lo (so the kernel accepts packets to them,
# and replies come from them), ARP settings so the backend never answers ARP for a VIP,
# decapsulation of the balancer's IP-in-IP packets, rp_filter off where decapsulated packets
# arrive, and a small HTTP server on the VIPs that says which backend answered. Idempotent.
#
# Usage: backend.sh [--interface eth1] [--vip 10.100.0.1]... [--vip6 fd00:100::1]...
#                   [--decap ipip|none] [--no-http] [--name NAME] [--netns NAME] [--dry-run]
#
#   --decap ipip   the kernel's tunnel drivers: ipip (IPv4 outer header) and ip6_tunnel (IPv6
#                  outer header); their fallback devices tunl0 / ip6tnl0 take IP-in-IP packets
#                  addressed to any local address. `none` when something else decapsulates (the
#                  veth lab's XDP program lb/lab/decap.c, on kernels without the modules).
#   --netns NAME   configure namespace NAME instead of the host (LB_NETNS); DRY_RUN=1 prints.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

IFACE="eth1"
VIPS=()
VIPS6=()
DECAP="ipip"
HTTP=1
NAME="$(hostname)"
HTTP_ROOT="/srv/lb-lab"

while (($#)); do
    case "$1" in
        --interface) IFACE="$2"; shift 2 ;;
        --vip) VIPS+=("$2"); shift 2 ;;
        --vip6) VIPS6+=("$2"); shift 2 ;;
        --decap) DECAP="$2"; shift 2 ;;
        --no-http) HTTP=0; shift ;;
        --name) NAME="$2"; shift 2 ;;
        --netns) NETNS="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
((${#VIPS[@]} + ${#VIPS6[@]})) || VIPS=("10.100.0.1")
HTTP_DIR="$HTTP_ROOT/$NAME"
[[ "$DECAP" == ipip || "$DECAP" == none ]] || die "--decap is ipip or none, not $DECAP"
need_root
check_netns

# 1. The VIPs on lo, host routes only: the backend accepts them, and never routes them.
for vip in "${VIPS[@]}"; do
    net ip addr replace "$vip/32" dev lo
done
for vip in "${VIPS6[@]}"; do
    net ip -6 addr replace "$vip/128" dev lo nodad
done
net ip link set lo up

# 2. ARP: answer only for addresses of the interface asked on (arp_ignore=1), and source ARP
# requests from that interface's address (arp_announce=2), so no VIP is ever announced by a
# backend: the VIP's MAC on the network stays the balancer's. "all" and the interface, since
# the kernel takes the maximum of the two.
for scope in all "$IFACE"; do
    sysctl_set "net.ipv4.conf.$scope.arp_ignore" 1
    sysctl_set "net.ipv4.conf.$scope.arp_announce" 2
done

# 3. Decapsulation, and rp_filter off where packets arrive: the outer source is the balancer's
# encap prefix (172.16.0.0/16 by default) and the inner source a client, neither of them
# routed back through the interface they came in on. (The kernel uses max(all, interface).)
rp_scopes=(all default "$IFACE")
if [[ "$DECAP" == ipip ]]; then
    run modprobe ipip
    net ip link set tunl0 up
    rp_scopes+=(tunl0)
    if ((${#VIPS6[@]})); then
        run modprobe ip6_tunnel
        net ip link set ip6tnl0 up
    fi
fi
for scope in "${rp_scopes[@]}"; do
    sysctl_set "net.ipv4.conf.$scope.rp_filter" 0
done

# 4. An HTTP server on port 80 of every address: the page names this backend.
if ((HTTP)); then
    write_file "$HTTP_DIR/index.html" <<<"$NAME"
    if [[ -n "$NETNS" ]]; then
        net setsid -f python3 -m http.server 80 --directory "$HTTP_DIR"
    else
        write_file /etc/systemd/system/lb-lab-http.service <<UNIT
[Unit]
Description=lb lab: HTTP server naming this backend ($NAME)
After=network-online.target

[Service]
ExecStart=/usr/bin/python3 -m http.server 80 --directory $HTTP_DIR
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
        run systemctl daemon-reload
        run systemctl enable --now lb-lab-http.service
    fi
fi
log "backend ${NAME}${NETNS:+ (netns $NETNS)}: VIPs ${VIPS[*]} ${VIPS6[*]} on lo, decap $DECAP"
