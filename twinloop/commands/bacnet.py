"""``twinloop bacnet discover``: list a BACnet/IP device's objects, read from the device at
the address given (no Who-Is), and draft the site's point map from them (docs/bacnet.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from twinloop.commands.arguments import CommandError, Subparsers


def _host_port(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"bacnet discover {flag} must be HOST:PORT, got {text!r}")
    return host, int(port)


def _cmd_discover(args: argparse.Namespace) -> int:
    from connectors.bacnet_discovery import discover, draft_point_map, inventory_table
    from connectors.catalog import PointCatalog
    from physics.plant.site import SITE_VARIANTS, site_variant

    address = args.address if ":" in args.address else f"{args.address}:47808"
    _host_port(address, "--address")
    local_host, local_port = _host_port(args.local, "--local")
    if args.device_instance is not None and not 0 <= args.device_instance <= 4_194_302:
        raise CommandError("bacnet discover --device-instance must be 0-4194302")
    if not 0 < args.timeout <= 60:
        raise CommandError(f"bacnet discover --timeout must be in (0, 60] s, got {args.timeout}")
    if args.site_variant not in SITE_VARIANTS:
        raise CommandError(
            f"unknown --site-variant {args.site_variant!r} (known: {', '.join(SITE_VARIANTS)})"
        )
    inventory = discover(
        address,
        device_instance=args.device_instance,
        local_host=local_host,
        local_port=local_port,
        timeout_s=args.timeout,
    )
    for line in inventory_table(inventory):
        print(line)
    catalog = PointCatalog.for_site(site_variant(args.site_variant))
    draft, unmapped = draft_point_map(inventory, catalog, site=args.site, priority=args.priority)
    writable = sum(e.writable for e in draft.points)
    print(
        f"draft map: {len(draft.points)} points ({writable} writable setpoints), "
        f"{len(unmapped)} objects unmapped"
        + ("; no heartbeat: setpoints read-only" if draft.devices["bms"].heartbeat is None else "")
    )
    if args.write_point_map:
        out = Path(args.write_point_map)
        try:
            out.write_text(draft.to_yaml(), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror}") from None
        print(f"wrote {out}: review its limits, scale and priority before serving it")
    return 0


def add_commands(sub: Subparsers) -> None:
    """``twinloop bacnet discover``."""
    bacnet = sub.add_parser("bacnet", help="BACnet/IP tools (docs/bacnet.md)")
    inner = bacnet.add_subparsers(dest="bacnet_command", required=True)
    disc = inner.add_parser(
        "discover",
        help="list a device's objects (read from it directly, no Who-Is) and draft a point map",
    )
    disc.add_argument(
        "--address", required=True, metavar="HOST[:PORT]", help="the device (port 47808)"
    )
    disc.add_argument(
        "--device-instance",
        type=int,
        default=None,
        help="the device's instance (default: ask it, through the wildcard instance)",
    )
    disc.add_argument(
        "--local",
        default="0.0.0.0:47808",
        metavar="HOST:PORT",
        help="TwinLoop's own BACnet/IP address (default 0.0.0.0:47808)",
    )
    disc.add_argument("--timeout", type=float, default=3.0, help="per request, s (3)")
    disc.add_argument("--site", default="site1", help="the site name in the drafted map")
    disc.add_argument(
        "--site-variant", default="reference", help="the site whose point catalog maps names"
    )
    disc.add_argument(
        "--priority", type=int, default=10, help="TwinLoop's slot in the drafted map (10)"
    )
    disc.add_argument("--write-point-map", metavar="FILE", help="write the drafted map here")
    disc.set_defaults(func=_cmd_discover)
