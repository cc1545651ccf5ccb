"""The `lb` command: run the daemon, detach it, and talk to its REST API from a terminal."""

from __future__ import annotations

import argparse
import enum
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr, ValidationError

from lb.exitcodes import ExitCode, help_text

EPILOG = f"""\
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

{help_text()}"""

RUN_DESCRIPTION = """\
Run the daemon: attach the XDP program, serve the REST API.

Settings, highest precedence first: these flags, the environment (LB_*), the --config file,
the defaults shown.
"""

RUN_EPILOG = """\
examples:
  lb run --interface eth0
  lb run --interface eth0 --xdp-mode generic --api-port 9000
  lb run --config /etc/lb/lb.toml --log-level debug
  LB_INTERFACE=eth0 LB_API_TOKEN=s3cret lb run --api-host 0.0.0.0
"""

# The settings `lb detach` takes (it needs to find the program and its maps, nothing more).
DETACH_SETTINGS = ("interface", "netns", "pin_dir")


# --- `lb run` flags, one per settings field ----------------------------------------------
def _flag_kind(annotation: Any) -> tuple[type, list[str] | None] | None:
    """(argparse type, choices) for a field's annotation (str: pydantic parses the string);
    None for a secret, which gets no flag."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if annotation is SecretStr:
        return None
    if typing.get_origin(annotation) is typing.Literal:
        return str, [str(a) for a in typing.get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return str, [str(m.value) for m in annotation]
    if annotation in (int, float):
        return annotation, None
    return str, None


def add_settings_flags(parser: argparse.ArgumentParser,
                       names: Sequence[str] | None = None) -> list[str]:
    """One `--flag-name` per Settings field (`names`: only these), typed, with the field's
    description and default as help; secrets get none (a command line shows in `ps`).
    Every flag defaults to None: a flag not given overrides nothing. Returns the fields."""
    from lb.control.settings import Settings

    added = []
    for name, field in Settings.model_fields.items():
        flag = None if names is not None and name not in names else _flag_kind(field.annotation)
        if flag is None:
            continue
        kind, choices = flag
        env = f"LB_{name.upper()}"
        if field.is_required():
            where = f"{env}; required"
        elif field.default is None or field.default_factory is not None:
            where = env  # no default, or one computed at start (the description says which)
        else:
            default = getattr(field.default, "value", field.default)
            where = f"{env}; default {default}"
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, choices=choices,
                            help=f"{field.description} ({where})")
        added.append(name)
    return added


def _run_parser(sub: argparse._SubParsersAction, with_flags: bool) -> None:
    p = sub.add_parser("run", help="run the daemon (data plane + REST API)",
                       description=RUN_DESCRIPTION,
                       epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML settings file (also LB_CONFIG)")
    if with_flags:
        p.set_defaults(settings_fields=add_settings_flags(p))

    d = sub.add_parser("detach", help="remove the XDP program (and with --unpin its maps)")
    d.add_argument("--config", help="TOML settings file (also LB_CONFIG)")
    if with_flags:
        d.set_defaults(settings_fields=add_settings_flags(d, DETACH_SETTINGS))
    d.add_argument("--unpin", action="store_true", help="also delete the pinned maps")

    c = sub.add_parser("doctor", help="check this host for what makes an XDP balancer fail "
                       "(JIT, bpffs, headers, bcc, driver, XDP mode, MTU, offloads)",
                       description="Exit status 1 if any check fails; warnings do not fail.")
    c.add_argument("--interface", help="also check this interface (driver, mode, MTU, ...)")
    c.add_argument("--netns", help="network namespace of the interface")
    c.add_argument("--json", action="store_true", help="findings as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="lb", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    # The settings flags need the settings model (pydantic-settings, ~0.15 s to import):
    # built only for the commands that take them, so that `lb vip list` starts fast.
    _run_parser(sub, with_flags=argv[:1] in (["run"], ["detach"]))
    from lb import client_cli
    client_cli.add_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from lb import doctor
        return doctor.main(args.interface, args.netns, args.json)
    if args.command in ("run", "detach"):
        from lb.control.settings import load_settings
        try:
            settings = load_settings(args.config, **{n: getattr(args, n)
                                                     for n in args.settings_fields})
        except ValidationError as e:
            print(f"lb {args.command}: bad settings:\n{e}", file=sys.stderr)
            return ExitCode.USAGE
        from lb import daemon
        if args.command == "run":
            daemon.run(settings)
        else:
            daemon.detach(settings, unpin=args.unpin)
        return ExitCode.OK
    return client_cli.dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
