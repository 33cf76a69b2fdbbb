"""`neurender keys`: the daemon's CURVE key pair and the allow-list of TCP clients."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys-dir", default=None,
                   help="default $NEURENDER_KEYS_DIR, else ~/.config/neurender/keys")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION")
    sub.add_parser("init", help="create the daemon's key pair if missing and print its public key")
    a = sub.add_parser("add", help="create a client key pair and allow it")
    a.add_argument("name")
    al = sub.add_parser("allow", help="allow a client public key made elsewhere (40 z85 chars)")
    al.add_argument("name")
    al.add_argument("public_key")
    r = sub.add_parser("revoke", help="remove a client from the allow-list")
    r.add_argument("name")
    sub.add_parser("list", help="the daemon's public key and the allowed clients (default)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from bridge import keys, paths
    kdir = Path(args.keys_dir) if args.keys_dir else paths.default_keys_dir()
    action = args.keys_command or "list"
    try:
        if action == "init":
            pub, _ = keys.ensure_server_keys(kdir)
            print(f"server public key: {pub.decode()}  ({kdir / 'server.key'})")
        elif action == "add":
            keys.ensure_server_keys(kdir)
            public, secret = keys.add_client(kdir, args.name)
            print(f"client {args.name}: allowed; its key pair is {secret} (copy it to the client, keep it secret)")
        elif action == "allow":
            print(f"allowed {args.name}: {keys.allow(kdir, args.name, args.public_key.encode())}")
        elif action == "revoke":
            if not keys.revoke(kdir, args.name):
                print(f"no allowed client named {args.name!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.name} (a running daemon applies it on SIGHUP or restart)")
        else:
            server = kdir / "server.key"
            if server.exists():
                print(f"server public key: {keys.load_public(server).decode()}  ({server})")
            else:
                print(f"no server key yet in {kdir} (`neurender keys init`)")
            allowed = keys.allowed(kdir)
            print(f"{len(allowed)} allowed client(s):")
            for name, key in allowed.items():
                print(f"  {name}  {key.decode()}")
    except (ValueError, FileExistsError) as e:
        print(f"neurender keys: {e}", file=sys.stderr)
        return 1
    return 0
