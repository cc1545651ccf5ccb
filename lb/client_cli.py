"""The `lb` subcommands that talk to a running daemon's REST API (placeholder)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    return None


def dispatch(args: argparse.Namespace) -> int:
    raise SystemExit(f"unknown command {args.command}")
