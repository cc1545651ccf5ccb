# shellcheck shell=bash
# Shared by the provisioning scripts: dry mode, network namespaces, logging, file writes.
#
#   DRY_RUN=1        print every command (prefixed "+ ") and every file (prefixed "|   ")
#                    instead of running or writing it; nothing on the host changes
#   --netns NAME     (or LB_NETNS=NAME) run the network commands inside namespace NAME, so CI
#                    can provision namespaces on one host the way Vagrant provisions VMs
#   LB_REPO          the checkout (default: two folders up from this file; /opt/lb in the VMs)

DRY_RUN="${DRY_RUN:-0}"
NETNS="${LB_NETNS:-}"
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO="${LB_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PROG="$(basename "$0" .sh)"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "$*"; exit 1; }

# quote ARG...: the arguments as one line a shell reads back the same (single quotes if needed)
quote() {
    local out=() a q="'" plain='^[A-Za-z0-9_./:=@%+,-]+$'
    for a in "$@"; do
        if [[ "$a" =~ $plain ]]; then
            out+=("$a")
        else
            out+=("$q${a//$q/$q\\$q$q}$q")
        fi
    done
    printf '%s\n' "${out[*]}"
}

# run CMD...: run a command on the host (DRY_RUN=1: print it)
run() {
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '+ %s\n' "$(quote "$@")"
    else
        "$@"
    fi
}

# net CMD...: a command that acts on the network stack: inside $NETNS when one is set
net() {
    if [[ -n "$NETNS" ]]; then
        run ip netns exec "$NETNS" "$@"
    else
        run "$@"
    fi
}

# sysctl_set KEY VALUE: a (network) sysctl, in $NETNS when set
sysctl_set() { net sysctl -q -w "$1=$2"; }

# write_file PATH [MODE] < CONTENT: write atomically (DRY_RUN=1: print it)
write_file() {
    local path=$1 mode=${2:-0644} content
    content="$(cat)"
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '+ write %s (mode %s)\n' "$path" "$mode"
        printf '%s\n' "$content" | sed 's/^/|   /'
        return
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" >"$path.tmp"
    chmod "$mode" "$path.tmp"
    mv "$path.tmp" "$path"
}

# need_root: every real run changes the host
need_root() {
    [[ "$DRY_RUN" == 1 || "$(id -u)" == 0 ]] || die "run as root (or DRY_RUN=1 to print)"
}

# check_netns: the namespace exists (in a real run)
check_netns() {
    if [[ -n "$NETNS" && "$DRY_RUN" != 1 ]]; then
        ip netns list | grep -qw -- "$NETNS" || die "no network namespace $NETNS"
    fi
}
