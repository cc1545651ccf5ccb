#!/usr/bin/env bash
# Every VM: the project's own install step (scripts/install.sh: Debian packages, kernel headers
# for bcc, bpffs, the venv with the `lb` command), plus the headers of the running kernel and the
# few tools the lab uses (curl, wrk). Idempotent.
#
# Usage: common.sh [--netns NAME] [--dry-run]     (DRY_RUN=1 also prints instead of running)
# --netns is accepted for symmetry with the other scripts: nothing here is per-namespace.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

while (($#)); do
    case "$1" in
        --netns) NETNS="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
need_root

# bcc compiles against the running kernel's headers: install that exact package when the
# archive has it (scripts/install.sh then finds them); otherwise it links the newest it has.
headers="linux-headers-$(uname -r)"
run apt-get update -qq
if [[ "$DRY_RUN" == 1 ]] || apt-cache show "$headers" >/dev/null 2>&1; then
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$headers" curl wrk
else
    log "no $headers in the archive: scripts/install.sh links the newest headers instead"
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl wrk
fi
run bash "$REPO/scripts/install.sh"
