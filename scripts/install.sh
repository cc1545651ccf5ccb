#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 host; safe to run again.
#
# Steps: Debian packages (bcc, kernel headers, tools), the header links bcc looks
# for, bpffs, then a virtualenv that sees Debian's bcc and holds the Python deps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
APT_PACKAGES=(python3-bpfcc python3-venv python3-dev gcc linux-headers-amd64 iproute2 ethtool bpftool netsniff-ng shellcheck ruby etcd-server etcd-client)

log() { printf 'install: %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# bcc looks for headers at /lib/modules/$(uname -r)/{build,source}. Debian's
# headers are for its own kernel; they serve XDP programs on this one too.
kdir="/lib/modules/$(uname -r)"
if [[ ! -e "$kdir/build/include" ]]; then
    arch_dir=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1)
    common_dir=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -1)
    [[ -n "$arch_dir" && -n "$common_dir" ]] || { echo "install: no kernel headers under /usr/src" >&2; exit 1; }
    mkdir -p "$kdir"
    ln -sfn "$arch_dir" "$kdir/build"
    ln -sfn "$common_dir" "$kdir/source"
    log "kernel headers linked: $kdir -> $arch_dir, $common_dir"
fi

mountpoint -q /sys/fs/bpf || { mount -t bpf bpf /sys/fs/bpf; log "mounted bpffs"; }

# Debian's python is the one bcc is built for; the venv sees its site-packages.
if [[ ! -x "$VENV/bin/python" ]]; then
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
    log "virtualenv created at $VENV"
fi
stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/lb/*/_*.c "$ROOT"/lb/xdp/lb_consts.h \
    "$ROOT"/lb/xdp/lb_structs.h "$ROOT"/lb/xdp/flowhash.h "$ROOT"/lb/xdp/conntable.h | sha256sum | cut -c1-16)"
if [[ ! -e "$stamp" ]]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "${ROOT}[dev]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
    log "python dependencies installed"
fi
"$VENV/bin/python" -c "import bcc, pyroute2, scapy, fastapi" || { echo "install: venv cannot import its dependencies" >&2; exit 1; }
