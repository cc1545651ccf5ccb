#!/usr/bin/env bash
# The balancer: /etc/lb/lb.toml for the lab's interface and next hop, the systemd unit
# (deploy/lb.service), started; then the lab's VIP and backends through the REST API
# (PUT /config: idempotent, running it twice changes nothing). Idempotent.
#
# Usage: balancer.sh [--interface eth1] [--router 192.168.50.10] [--next-hop-mac MAC]
#                    [--vip 10.100.0.1] [--port 80] [--backend 192.168.50.11]...
#                    [--netns NAME] [--dry-run]
#
#   --router       the lab's router (the client VM): encapsulated frames go to its MAC, which
#                  is resolved here unless --next-hop-mac gives it (the VM's default route is
#                  Vagrant's NAT interface, not the lab's, so the daemon cannot find it alone)
#   --netns NAME   the interface lives in namespace NAME: written as `netns` in lb.toml, the
#                  daemon enters it (LB_NETNS); DRY_RUN=1 prints instead of running
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

IFACE="eth1"
ROUTER="192.168.50.10"
NEXT_HOP_MAC=""
VIP="10.100.0.1"
PORT=80
BACKENDS=()
API="http://127.0.0.1:8470"
ETC="${LB_ETC:-/etc/lb}"

while (($#)); do
    case "$1" in
        --interface) IFACE="$2"; shift 2 ;;
        --router) ROUTER="$2"; shift 2 ;;
        --next-hop-mac) NEXT_HOP_MAC="$2"; shift 2 ;;
        --vip) VIP="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --backend) BACKENDS+=("$2"); shift 2 ;;
        --netns) NETNS="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
((${#BACKENDS[@]})) || BACKENDS=("192.168.50.11" "192.168.50.12")
need_root
check_netns

# 1. The router's MAC: one datagram makes the kernel resolve it, the neighbour table has it.
if [[ -z "$NEXT_HOP_MAC" ]]; then
    net ping -q -c 1 -W 1 "$ROUTER" || true
    if [[ "$DRY_RUN" == 1 ]]; then
        net ip neigh show "$ROUTER" dev "$IFACE"
        NEXT_HOP_MAC="<MAC of $ROUTER>"
    else
        NEXT_HOP_MAC="$(net ip neigh show "$ROUTER" dev "$IFACE" | awk '/lladdr/ {print $3; exit}')"
        [[ -n "$NEXT_HOP_MAC" ]] || die "cannot resolve the MAC of $ROUTER on $IFACE"
    fi
fi

# 2. Settings (deploy/lb.toml documents every key), the unit, started (restarted: hitless,
# the program keeps forwarding while the daemon restarts and adopts its pinned maps).
write_file "$ETC/lb.toml" <<TOML
# Written by vagrant/provision/balancer.sh; every setting: $REPO/deploy/lb.toml
interface = "$IFACE"
next_hop_mac = "$NEXT_HOP_MAC"
${NETNS:+netns = \"$NETNS\"}
TOML
run install -m 0644 "$REPO/deploy/lb.service" /etc/systemd/system/lb.service
run systemctl daemon-reload
run systemctl enable lb.service
run systemctl restart lb.service
run "$REPO/.venv/bin/lb" doctor --interface "$IFACE" ${NETNS:+--netns "$NETNS"}

# 3. Wait until the program is attached (a compile takes a few seconds), then the lab's VIP.
if [[ "$DRY_RUN" != 1 ]]; then
    for _ in $(seq 60); do
        curl -fsS "$API/readyz" >/dev/null 2>&1 && break
        sleep 1
    done
fi
run curl -fsS "$API/readyz"
backends_json=""
for b in "${BACKENDS[@]}"; do
    backends_json+="${backends_json:+, }{\"address\": \"$b\", \"weight\": 1}"
done
config="{\"vips\": [{\"address\": \"$VIP\", \"port\": $PORT, \"protocol\": \"tcp\", \"backends\": [$backends_json]}]}"
run curl -fsS -X PUT -H 'Content-Type: application/json' --data "$config" "$API/config"
log "balancing $VIP:$PORT/tcp over ${BACKENDS[*]} on $IFACE${NETNS:+ (netns $NETNS)}, next hop $NEXT_HOP_MAC"
