"""The `lb` commands that talk to a running daemon's REST API: VIPs, backends, stats, config.

Thin on purpose: a command is one request (two where a table needs a VIP's description), the
API validates, and its messages are printed as they come. Output is plain aligned text for a
person, or with `--json` the API's JSON body, unchanged, for a script. Results go to stdout,
errors to stderr.

Exit codes (scripts can rely on them) are lb.exitcodes.ExitCode; `dispatch` maps each error to
one:

    CliError                      what the user gave cannot be used       -> USAGE
    lb.client.ClientError
    ├── Unreachable               no HTTP answer                          -> UNREACHABLE
    └── ApiError                  an HTTP answer with an error status
        ├── Refused               4xx                                     -> REFUSED
        └── ServerError           5xx                                     -> SERVER
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from lb.client import DEFAULT_API, DEFAULT_TIMEOUT, ApiError, Client, Refused, Unreachable, Vip
from lb.exitcodes import ExitCode, help_text
from lb.table import table
from lb.xdp.consts import VipFlag

# Flag names as the API spells them (lower-case VipFlag names), for --help only.
FLAG_NAMES = [f.name.lower() for f in VipFlag]


class CliError(Exception):
    """Something the user gave (a file, say) cannot be used; nothing was sent."""


# --- printing ------------------------------------------------------------------------------
def print_json(body: Any) -> None:
    print(json.dumps(body, indent=2))


def _fields(pairs: Sequence[tuple[str, object]]) -> str:
    """`name  value` lines with the values aligned."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in pairs)


def _count(n: int) -> str:
    return f"{n:,}"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _describe(vip: Vip) -> str:
    return f"{vip['address']} {vip['port']}/{vip['protocol']}"


def _flags(flags: Sequence[str], none: str = "none") -> str:
    return ",".join(flags) if flags else none


def _backends_table(backends: Sequence[Mapping[str, Any]]) -> str:
    total = sum(b["weight"] for b in backends)
    return table([(b["address"], b["weight"], _share(b["weight"], total)) for b in backends],
                 ("backend", "weight", "weight share"), "lrr")


def _apply_report(report: Mapping[str, Any]) -> str:
    return (f"{report['vips_added']} VIPs added, {report['vips_removed']} removed, "
            f"{report['vips_changed']} changed; {report['ring_slots_written']} ring slots "
            "written")


# --- commands: each takes the client and the arguments, prints, returns an exit code -------
def cmd_status(api: Client, args: argparse.Namespace) -> int:
    body = api.readyz()
    ready = bool(body.get("ready"))
    if args.json:
        print_json(body)
    else:
        startup = body["startup"]
        where = body.get("interface") or "-"
        if body.get("netns"):
            where += f" (netns {body['netns']})"
        print(_fields([
            ("ready", "yes" if ready else "NO"),
            ("api", api.url),
            ("interface", where),
            ("xdp mode", body.get("mode") or "-"),
            ("next hop", body.get("next_hop_mac") or "-"),
            ("pin dir", body.get("pin_dir") or "-"),
            ("startup", f"adopted {startup['adopted_vips']} VIPs from pinned maps; "
                        + _apply_report(startup)),
        ]))
        for problem in body.get("problems") or []:
            print(f"problem: {problem}")
    return ExitCode.OK if ready else ExitCode.SERVER


def cmd_vip_list(api: Client, args: argparse.Namespace) -> int:
    vips = api.list_vips()
    if args.json:
        print_json(vips)
    elif not vips:
        print("no VIPs (add one: lb vip add ADDRESS PORT)")
    else:
        print(table([(v["id"], v["address"], v["port"], v["protocol"], _flags(v["flags"], "-"),
                      len(v["backends"])) for v in vips],
                    ("id", "address", "port", "protocol", "flags", "backends"), "rlrllr"))
    return ExitCode.OK


def cmd_vip_add(api: Client, args: argparse.Namespace) -> int:
    vip = api.create_vip(args.address, args.port, args.protocol, flags=args.flag)
    if args.json:
        print_json(vip)
    else:
        print(f"created VIP {vip['id']}: {_describe(vip)} (flags: {_flags(vip['flags'])})")
        print(f"next: lb backend add {vip['id']} ADDRESS [--weight N]")
    return ExitCode.OK


def cmd_vip_show(api: Client, args: argparse.Namespace) -> int:
    vip = api.get_vip(args.vip_id)
    if args.json:
        print_json(vip)
        return ExitCode.OK
    print(f"VIP {vip['id']}: {_describe(vip)}")
    print(f"flags: {_flags(vip['flags'])}")
    _print_backends(vip["id"], vip["backends"])
    return ExitCode.OK


def _print_backends(vip_id: int, backends: Sequence[Mapping[str, Any]]) -> None:
    if backends:
        print(_backends_table(backends))
    else:
        print(f"no backends (add one: lb backend add {vip_id} ADDRESS)")


def cmd_vip_remove(api: Client, args: argparse.Namespace) -> int:
    api.delete_vip(args.vip_id)
    if not args.json:
        print(f"removed VIP {args.vip_id}")
    return ExitCode.OK


def cmd_vip_flags(api: Client, args: argparse.Namespace) -> int:
    if args.names or args.clear:
        vip = api.set_flags(args.vip_id, args.names)
    else:
        vip = api.get_vip(args.vip_id)
    if args.json:
        print_json(vip)
    else:
        print(f"VIP {vip['id']} flags: {_flags(vip['flags'])}")
    return ExitCode.OK


def cmd_backend_list(api: Client, args: argparse.Namespace) -> int:
    backends = api.list_backends(args.vip_id)
    if args.json:
        print_json(backends)
    else:
        _print_backends(args.vip_id, backends)
    return ExitCode.OK


def cmd_backend_add(api: Client, args: argparse.Namespace) -> int:
    backend = api.add_backend(args.vip_id, args.address, args.weight)
    if args.json:
        print_json(backend)
    else:
        print(f"added backend {backend['address']} (weight {backend['weight']}) "
              f"to VIP {args.vip_id}")
    return ExitCode.OK


def cmd_backend_weight(api: Client, args: argparse.Namespace) -> int:
    backend = api.update_backend(args.vip_id, args.address, weight=args.weight)
    if args.json:
        print_json(backend)
    else:
        print(f"backend {backend['address']} of VIP {args.vip_id}: weight {backend['weight']}")
    return ExitCode.OK


def cmd_backend_remove(api: Client, args: argparse.Namespace) -> int:
    api.remove_backend(args.vip_id, args.address)
    if not args.json:
        print(f"removed backend {args.address} from VIP {args.vip_id} "
              "(its established flows keep reaching it)")
    return ExitCode.OK


def cmd_stats(api: Client, args: argparse.Namespace) -> int:
    if args.vip_id is not None:
        return _vip_stats(api, args)
    stats = api.stats()
    if args.json:
        print_json(stats)
        return ExitCode.OK
    totals, ct = stats["totals"], stats["conn_table"]
    print("packets by verdict")
    print(table([(name, _count(n)) for name, n in totals.items()], ("verdict", "packets"), "lr"))
    print("\nconnection table")
    rows = [(name, _count(n)) for name, n in ct.items()]
    rows.append(("hit ratio", _share(ct.get("hit", 0), ct.get("hit", 0) + ct.get("miss", 0))))
    print(table(rows, ("lookup", "packets"), "lr"))
    for group, title in (("pass_reasons", "passed to the kernel"), ("drop_reasons", "dropped")):
        nonzero = [(name, _count(n)) for name, n in stats[group].items() if n]
        print(f"\n{title}, by reason")
        print(table(nonzero, ("reason", "packets"), "lr") if nonzero else "  none")
    return ExitCode.OK


def _trace_text(t: Mapping[str, Any]) -> str:
    f = t["flow"]
    lines = [f"flow     {f['src']}:{f['sport']} -> {f['dst']}:{f['dport']} {f['protocol']}"
             f" ({'SYN' if t['syn'] else 'ACK'})"]
    vip = t["vip"]
    if vip is None:
        lines.append(f"vip      none: {t['no_vip_reason']}")
    else:
        lines.append(f"vip      {vip['id']}: {vip['address']} {vip['port']}/{vip['protocol']} "
                     f"(matched by {vip['match']}; flags {_flags(vip['flags'])})")
        slot = t["slot_backend"] or {}
        settled = {True: "settled", False: "not settled", None: "settled: unknown"}
        lines.append(f"hash     {t['flow_hash']:#010x} -> ring slot {t['ring_slot']}: backend "
                     f"{slot.get('address') or 'none'} (index {slot.get('index', 0)}, "
                     f"{settled[t['slot_settled']]})")
    if t["conn_table"]:
        for w in t["conn_table"]:
            age = "" if w["age_s"] is None else f", idle {w['age_s']:.1f} s"
            lines.append(f"conn     cpu {w['cpu']} set {w['set']} way {w['way']}: "
                         f"{w['backend'] or w['backend_index']}{age}")
    else:
        lines.append("conn     no connection-table entry on any CPU")
    for b in t["backends"]:
        lines.append(f"backend  {b['address']}: {b['state']}, weight {b['weight']}"
                     f"{', draining' if b['drain'] and b['state'] != 'draining' else ''}"
                     f"{'' if b['in_ring'] else ', not in the ring'}")
    if not t["simulated"]:
        lines.append("verdict  unknown (the daemon has no simulator)")
    for v in t["verdicts"]:
        outer = v["outer"]
        where = (f" -> outer {outer['family']} {outer['src']} -> {outer['dst']} ttl "
                 f"{outer['ttl']}, to {outer['mac_dst']}") if outer else ""
        lines.append(f"verdict  cpu {v['cpu']}: {v['verdict']} ({', '.join(v['reasons'])})"
                     f"{where}")
    return "\n".join(lines)


def cmd_trace(api: Client, args: argparse.Namespace) -> int:
    t = api.trace(args.src, args.dst, args.sport, args.dport, args.proto, args.syn)
    if args.json:
        print_json(t)
    else:
        print(_trace_text(t))
    return ExitCode.OK


def _event_text(e: Mapping[str, Any]) -> str:
    fields = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("seq", "time", "kind"))
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e["time"]))
    return f"{e['seq']:>6} {when} {e['kind']:<12} {fields}"


def cmd_events(api: Client, args: argparse.Namespace) -> int:
    """Print the events after --since; with --follow, keep printing new ones as they come
    (a long poll) until interrupted."""
    cursor = args.since
    while True:
        body = api.events(cursor, wait=25.0 if args.follow else 0.0)
        for e in body["events"]:
            print(json.dumps(e) if args.json else _event_text(e), flush=True)
        cursor = body["next"]
        if not args.follow:
            return ExitCode.OK


def cmd_fleet_status(api: Client, args: argparse.Namespace) -> int:
    """The fleet's hosts, the revision each applied, and whether their rings agree; exit 1
    when they do not (a host lags behind, or holds another ring)."""
    view = api.fleet()
    if args.json:
        print_json(view)
    else:
        revisions = {h["revision"] for h in view["hosts"]}
        newest = max(revisions, default=0)
        rows = [(h["name"] + (" (this host)" if h["name"] == view["host"] else ""),
                 str(h["revision"]), "behind" if h["revision"] < newest else "",
                 str(len(h["rings"])),
                 ",".join(str(i) for i in view["disagreeing_vips"]
                          if h["rings"].get(str(i), h["rings"].get(i)) is not None) or "")
                for h in view["hosts"]]
        print(f"store {view['store']}, {len(rows)} host(s)")
        print(table(rows, ("host", "revision", "", "rings", "disagreeing VIPs"), "lrlrl"))
        print("rings agree" if view["agreed"] else
              f"rings DIFFER for VIPs {view['disagreeing_vips'] or '-'} "
              f"(or revisions differ: {sorted(revisions)})")
    return ExitCode.OK if view["agreed"] else ExitCode.REFUSED


def _vip_stats(api: Client, args: argparse.Namespace) -> int:
    stats = api.vip_stats(args.vip_id)
    if args.json:
        print_json(stats)
        return ExitCode.OK
    vip = api.get_vip(args.vip_id)
    print(f"VIP {vip['id']}: {_describe(vip)}: {_count(stats['packets'])} packets, "
          f"{_count(stats['bytes'])} bytes, "
          f"{_count(stats.get('ct_miss_nonsyn', 0))} non-SYN TCP table misses")
    backends = stats["backends"]
    if not backends:
        print(f"no backends (add one: lb backend add {vip['id']} ADDRESS)")
        return ExitCode.OK
    sent = sum(b["packets"] for b in backends)
    print(table([(b["address"], b["weight"], _share(b["ring_slots"], stats["ring_size"]),
                  _count(b["packets"]), _count(b["bytes"]), _share(b["packets"], sent))
                 for b in backends],
                ("backend", "weight", "ring share", "packets", "bytes", "packet share"),
                "lrrrrr"))
    print("(a backend's packets and bytes count every VIP it serves)")
    return ExitCode.OK


def _read_document(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()
    except OSError as e:
        raise CliError(f"cannot read {name}: {e.strerror or e}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise CliError(f"{name} is not JSON: {e}") from None


def cmd_config_export(api: Client, args: argparse.Namespace) -> int:
    document = api.get_config()
    text = json.dumps(document, indent=2) + "\n"
    if args.file in (None, "-"):
        sys.stdout.write(text)
        return ExitCode.OK
    try:
        with open(args.file, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise CliError(f"cannot write {args.file}: {e.strerror or e}") from None
    if not args.json:
        vips = document["vips"]
        print(f"exported {len(vips)} VIPs with {sum(len(v['backends']) for v in vips)} "
              f"backends to {args.file}")
    return ExitCode.OK


def cmd_config_import(api: Client, args: argparse.Namespace) -> int:
    document = _read_document(args.file)
    report = api.put_config(document)
    if args.json:
        print_json(report)
    elif not any(report.values()):
        print(f"no change: the daemon already holds the configuration in {args.file}")
    else:
        print(f"imported {args.file}: {_apply_report(report)}")
    return ExitCode.OK


# --- the parsers ---------------------------------------------------------------------------
def _api_url(value: str) -> str:
    url = httpx.URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http(s) URL, "
                                         f"e.g. {DEFAULT_API}")
    return value


def _common_options() -> argparse.ArgumentParser:
    """--api, --token, --json, --timeout: on every command that talks to the API."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("API options")
    g.add_argument("--api", metavar="URL", type=_api_url,
                   default=os.environ.get("LB_API", DEFAULT_API),
                   help=f"the daemon's API (LB_API; default {DEFAULT_API})")
    g.add_argument("--token", default=os.environ.get("LB_API_TOKEN"),
                   help="bearer token for changes (LB_API_TOKEN)")
    g.add_argument("--json", action="store_true",
                   help="print the API's JSON instead of text (nothing for a removal)")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"wait this long for an answer (default {DEFAULT_TIMEOUT:g})")
    return p


Handler = Callable[[Client, argparse.Namespace], int]


def _leaf(sub: argparse._SubParsersAction, name: str, handler: Handler, help: str,
          examples: str, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, parents=[common],
                       epilog=f"examples:\n{examples}\n{help_text()}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(handler=handler)
    return p


def _group(sub: argparse._SubParsersAction, name: str, help: str,
           examples: str) -> argparse._SubParsersAction:
    p = sub.add_parser(name, help=help, description=help,
                       epilog=f"examples:\n{examples}\n{help_text()}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    return p.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add status, vip, backend, stats, trace, events, fleet and config to `lb`'s commands."""
    common = _common_options()

    _leaf(sub, "status", cmd_status, "is the daemon ready: attached, maps answering",
          "  lb status\n  lb status --api http://10.0.0.5:8470 --json\n", common)

    vip_examples = ("  lb vip add 10.100.0.1 80\n"
                    "  lb vip add 2001:db8::1 53 --protocol udp --flag hash_no_src_port\n"
                    "  lb vip list --json\n  lb vip show 1\n"
                    "  lb vip flags 1 no_conn_table\n  lb vip remove 1\n")
    vip = _group(sub, "vip", "list, add, show, remove VIPs and set their flags", vip_examples)
    _leaf(vip, "list", cmd_vip_list, "list the VIPs", "  lb vip list\n", common)
    p = _leaf(vip, "add", cmd_vip_add, "create a VIP (address, port, protocol)",
              "  lb vip add 10.100.0.1 80\n  lb vip add 10.100.0.1 0 --protocol udp\n", common)
    p.add_argument("address", metavar="ADDRESS", help="IPv4 or IPv6 address")
    p.add_argument("port", metavar="PORT", type=int, help="0..65535; 0 = every port")
    p.add_argument("--protocol", default="tcp", help="tcp (default) or udp")
    p.add_argument("--flag", action="append", default=[], metavar="NAME",
                   help=f"a flag, repeatable: {', '.join(FLAG_NAMES)}")
    p = _leaf(vip, "show", cmd_vip_show, "one VIP with its backends", "  lb vip show 1\n",
              common)
    p.add_argument("vip_id", metavar="VIP_ID", type=int)
    p = _leaf(vip, "remove", cmd_vip_remove, "delete a VIP and its backends",
              "  lb vip remove 1\n", common)
    p.add_argument("vip_id", metavar="VIP_ID", type=int)
    p = _leaf(vip, "flags", cmd_vip_flags, "show a VIP's flags, or replace them",
              "  lb vip flags 1                   show\n"
              "  lb vip flags 1 hash_no_src_port  set exactly these\n"
              "  lb vip flags 1 --clear           none\n", common)
    p.add_argument("vip_id", metavar="VIP_ID", type=int)
    flags = p.add_mutually_exclusive_group()
    flags.add_argument("names", metavar="NAME", nargs="*", default=[],
                       help=f"the new flags: {', '.join(FLAG_NAMES)}")
    flags.add_argument("--clear", action="store_true", help="remove every flag")

    backend_examples = ("  lb backend add 1 10.1.0.2 --weight 2\n  lb backend list 1\n"
                        "  lb backend weight 1 10.1.0.2 5\n  lb backend remove 1 10.1.0.2\n")
    backend = _group(sub, "backend", "list, add, re-weight and remove a VIP's backends",
                     backend_examples)
    p = _leaf(backend, "list", cmd_backend_list, "a VIP's backends and their weights",
              "  lb backend list 1\n", common)
    p.add_argument("vip_id", metavar="VIP_ID", type=int)
    p = _leaf(backend, "add", cmd_backend_add, "add a backend to a VIP",
              "  lb backend add 1 10.1.0.2\n  lb backend add 1 fd00:1::2 --weight 3\n", common)
    p.add_argument("vip_id", metavar="VIP_ID", type=int)
    p.add_argument("address", metavar="ADDRESS", help="the backend's (outer) address")
    p.add_argument("--weight", type=int, default=1, help="share of new flows (default 1)")
    p = _leaf(backend, "weight", cmd_backend_weight, "change a backend's weight",
              "  lb backend weight 1 10.1.0.2 5\n", common)
    p.add_argument("vip_id", metavar="VIP_ID", type=int)
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("weight", metavar="WEIGHT", type=int, help="share of new flows")
    p = _leaf(backend, "remove", cmd_backend_remove,
              "take a backend out of a VIP (established flows keep reaching it)",
              "  lb backend remove 1 10.1.0.2\n", common)
    p.add_argument("vip_id", metavar="VIP_ID", type=int)
    p.add_argument("address", metavar="ADDRESS")

    p = _leaf(sub, "stats", cmd_stats,
              "counters: all packets by verdict and reason, or one VIP's by backend",
              "  lb stats            totals, connection table, non-zero pass/drop reasons\n"
              "  lb stats 1          VIP 1: packets and bytes per backend, with shares\n"
              "  lb stats --json\n", common)
    p.add_argument("vip_id", metavar="VIP_ID", type=int, nargs="?")

    p = _leaf(sub, "trace", cmd_trace,
              "why a flow goes where it goes: VIP, hash, ring slot, connection table, "
              "health, and the program's verdict on one packet (changes nothing)",
              "  lb trace 192.0.2.7 10.100.0.1 40000 80\n"
              "  lb trace 192.0.2.7 10.100.0.1 40000 80 --syn\n"
              "  lb trace 2001:db8::7 2001:db8:100::1 5353 53 --proto udp --json\n", common)
    p.add_argument("src", metavar="SRC", help="the client's address")
    p.add_argument("dst", metavar="DST", help="the destination (a VIP's address, or not)")
    p.add_argument("sport", metavar="SPORT", type=int)
    p.add_argument("dport", metavar="DPORT", type=int)
    p.add_argument("--proto", default="tcp", choices=("tcp", "udp"))
    p.add_argument("--syn", action="store_true", help="trace a TCP SYN (default: an ACK, "
                   "a packet of an established flow)")

    p = _leaf(sub, "events", cmd_events,
              "the daemon's events: changes (who, revision), health transitions, ring "
              "rebuilds, starts and reconciles",
              "  lb events                 the last ones kept (up to 1024)\n"
              "  lb events --follow        and then new ones as they come\n"
              "  lb events --since 120 --json\n", common)
    p.add_argument("--since", type=int, default=0, metavar="SEQ",
                   help="only events after this seq (default 0: all kept)")
    p.add_argument("--follow", "-f", action="store_true", help="keep waiting for new events")

    fleet = _group(sub, "fleet", "the balancer hosts sharing this host's desired state (etcd)",
                   "  lb fleet status\n  lb fleet status --json\n")
    _leaf(fleet, "status", cmd_fleet_status,
          "each host's applied revision and ring digests; exit 1 when rings differ",
          "  lb fleet status\n", common)

    config = _group(sub, "config", "export or import the whole desired state as JSON",
                    "  lb config export lb.json\n  lb config import lb.json\n")
    p = _leaf(config, "export", cmd_config_export, "write every VIP and backend as JSON",
              "  lb config export             to stdout\n"
              "  lb config export lb.json\n", common)
    p.add_argument("file", metavar="FILE", nargs="?", help="default: stdout")
    p = _leaf(config, "import", cmd_config_import,
              "make the desired state exactly FILE (validated whole, applied atomically)",
              "  lb config import lb.json\n  lb config export | lb config import -\n", common)
    p.add_argument("file", metavar="FILE", help="JSON as `lb config export` writes; - = stdin")


def dispatch(args: argparse.Namespace) -> int:
    """Run the command `args` names; returns its exit code (see the module docstring)."""
    name = " ".join(filter(None, ("lb", args.command, getattr(args, "action", None))))
    api = Client(args.api, args.token, args.timeout)
    try:
        return args.handler(api, args)
    except CliError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return ExitCode.USAGE
    except Unreachable as e:
        print(f"{name}: {e}\nhint: is the daemon running (`lb run`)? Point --api (or LB_API) "
              "at it.", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except ApiError as e:
        verb = "refused" if isinstance(e, Refused) else "failed"
        if len(e.messages) == 1 and e.status != 422:
            print(f"{name}: the API {verb} ({e.status} {e.reason}): {e.messages[0]}",
                  file=sys.stderr)
        else:
            print(f"{name}: the API {verb} ({e.status} {e.reason}):", file=sys.stderr)
            for line in e.messages:
                print(f"  {line}", file=sys.stderr)
        if e.status == 401:
            print("hint: pass --token or set LB_API_TOKEN", file=sys.stderr)
        return ExitCode.REFUSED if isinstance(e, Refused) else ExitCode.SERVER
    finally:
        api.close()
