"""The `lb` command: run the daemon, detach it, and talk to its REST API from a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

EPILOG = """\
examples:
  lb run --interface eth0                       daemon: attach to eth0, API on 127.0.0.1:8470
  lb run --config /etc/lb/lb.toml               settings from a file (flags and LB_* override)
  lb detach --interface eth0 --unpin            remove the program and its pinned maps
  lb doctor --interface eth0                    check the host for what breaks XDP silently
  lb status                                     is the daemon ready (attached, maps answer)
  lb vip add 10.100.0.1 80 --protocol tcp       create a VIP; prints its id
  lb backend add 1 10.1.0.2 --weight 2          add a backend to VIP 1
  lb backend weight 1 10.1.0.2 5                change its weight
  lb vip list --json                            the API's JSON instead of a table
  lb stats 1                                    VIP 1's packets per backend, with shares
  lb config export lb.json                      the whole desired state, as JSON
  lb config import lb.json                      make the desired state exactly lb.json

API commands take --api URL (LB_API, default http://127.0.0.1:8470), --token (LB_API_TOKEN),
--json; `lb COMMAND --help` has more examples.

exit codes:
  0  done                     3  cannot reach the API (is `lb run` running? --api, LB_API)
  1  the API refused (4xx)    4  the API failed (5xx), or the daemon is not ready
  2  usage error (bad arguments, FILE unreadable or not JSON)
"""

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the daemon (data plane + REST API)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML settings file (also LB_CONFIG)")
    p.add_argument("--interface", help="interface to attach to (LB_INTERFACE)")
    p.add_argument("--netns", help="network namespace of the interface (labs)")
    p.add_argument("--xdp-mode", choices=["native", "generic"], help="default: native")
    p.add_argument("--next-hop-mac", help="default: resolved from the default route")
    p.add_argument("--egress-interface", help="two-arm mode: redirect out of this interface")
    p.add_argument("--mtu", type=int, help="L3 MTU toward backends (default: interface's)")
    p.add_argument("--api-host", help="default 127.0.0.1")
    p.add_argument("--api-port", type=int, help="default 8470")
    p.add_argument("--state-dir", help="database directory (default /var/lib/lb)")
    p.add_argument("--pin-dir", help="bpffs directory of the maps (default /sys/fs/bpf/lb)")
    p.add_argument("--max-vips", type=int)
    p.add_argument("--max-backends", type=int)
    p.add_argument("--ring-size", type=int)
    p.add_argument("--conn-table-size", type=int)
    p.add_argument("--settle-interval-s", type=float,
                   help="seconds between ring slot settles (default 10; 0: never)")
    p.add_argument("--tcp-idle-timeout-s", type=float,
                   help="a TCP flow idle this long after its slot changed may follow it "
                        "(default 900)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    d = sub.add_parser("detach", help="remove the XDP program (and with --unpin its maps)")
    d.add_argument("--config")
    d.add_argument("--interface")
    d.add_argument("--netns")
    d.add_argument("--pin-dir")
    d.add_argument("--unpin", action="store_true", help="also delete the pinned maps")

    c = sub.add_parser("doctor", help="check this host for what makes an XDP balancer fail "
                       "(JIT, bpffs, headers, bcc, driver, XDP mode, MTU, offloads)",
                       description="Exit status 1 if any check fails; warnings do not fail.")
    c.add_argument("--interface", help="also check this interface (driver, mode, MTU, ...)")
    c.add_argument("--netns", help="network namespace of the interface")
    c.add_argument("--json", action="store_true", help="findings as JSON")


def _settings(args: argparse.Namespace, names: Sequence[str]):
    from lb.control.settings import load_settings
    flags = {n: getattr(args, n, None) for n in names}
    return load_settings(args.config, **flags)


_RUN_FLAGS = ("interface", "netns", "xdp_mode", "next_hop_mac", "egress_interface", "mtu",
              "api_host", "api_port", "state_dir", "pin_dir", "max_vips", "max_backends",
              "ring_size", "conn_table_size", "settle_interval_s", "tcp_idle_timeout_s",
              "log_level")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lb", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    from lb import client_cli
    client_cli.add_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from lb import doctor
        return doctor.main(args.interface, args.netns, args.json)
    if args.command in ("run", "detach"):
        try:
            settings = _settings(args, _RUN_FLAGS if args.command == "run"
                                 else ("interface", "netns", "pin_dir"))
        except ValidationError as e:
            print(f"lb {args.command}: bad settings:\n{e}", file=sys.stderr)
            return EXIT_USAGE
        from lb import daemon
        if args.command == "run":
            daemon.run(settings)
        else:
            daemon.detach(settings, unpin=args.unpin)
        return EXIT_OK
    return client_cli.dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
