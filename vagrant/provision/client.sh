#!/usr/bin/env bash
# The client, which is also the lab's router: it routes the VIP range to the balancer, and
# forwards the balancer's encapsulated packets to the backends (the balancer sends every
# encapsulated frame to one next-hop MAC, as to a top-of-rack router). Idempotent.
#
# Usage: client.sh [--interface eth1] [--balancer 192.168.50.2] [--vip-range 10.100.0.0/24]
#                  [--mtu 1460] [--netns NAME] [--dry-run]
#
#   --mtu      the route MTU toward the VIPs: 1460 leaves the 40 bytes an outer header needs
#              on the lab's 1500-byte network (what MSS clamping at the edge does in production)
#   --netns    configure namespace NAME instead of the host (LB_NETNS); DRY_RUN=1 prints
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

IFACE="eth1"
BALANCER="192.168.50.2"
VIP_RANGE="10.100.0.0/24"
MTU=1460

while (($#)); do
    case "$1" in
        --interface) IFACE="$2"; shift 2 ;;
        --balancer) BALANCER="$2"; shift 2 ;;
        --vip-range) VIP_RANGE="$2"; shift 2 ;;
        --mtu) MTU="$2"; shift 2 ;;
        --netns) NETNS="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
need_root
check_netns

# 1. The VIPs are behind the balancer.
net ip route replace "$VIP_RANGE" via "$BALANCER" dev "$IFACE" mtu "$MTU"

# 2. Router: forward the encapsulated packets (outer source: the balancer's encap prefix, not
# routed back through the interface they arrive on, hence rp_filter 0), and no ICMP redirects
# (they come in and leave by the same interface).
sysctl_set net.ipv4.ip_forward 1
for scope in all default "$IFACE"; do
    sysctl_set "net.ipv4.conf.$scope.rp_filter" 0
    sysctl_set "net.ipv4.conf.$scope.send_redirects" 0
done
log "VIPs $VIP_RANGE via $BALANCER on $IFACE (mtu $MTU)${NETNS:+ (netns $NETNS)}; forwarding on"
