"""`mailha user|address|quota ...`: operator commands against a running store."""

from __future__ import annotations

import argparse
import getpass
import json
import pathlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.admin import Admin


def register(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--store", metavar="ADDR", help="store address (unix:/path or 127.0.0.1:PORT)")
    where.add_argument("--data", type=pathlib.Path, metavar="DIR", help="standalone data directory")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")

    user = sub.add_parser("user", help="add, delete, list users; set passwords")
    user_sub = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = user_sub.add_parser("add", parents=[common], help="add a user (password from stdin or a prompt)")
    p.add_argument("name")
    p.add_argument("--quota", type=int, default=0, metavar="BYTES", help="0 = the server default")
    p.add_argument("--admin", action="store_true", help="give the operators' console role (mailha web)")
    p.set_defaults(func=_run(_user_add))
    p = user_sub.add_parser("del", parents=[common], help="delete a user and all their mail")
    p.add_argument("name")
    p.set_defaults(func=_run(_user_del))
    p = user_sub.add_parser("passwd", parents=[common], help="set a user's password (stdin or a prompt)")
    p.add_argument("name")
    p.set_defaults(func=_run(_user_passwd))
    p = user_sub.add_parser("role", parents=[common], help="set a user's role: admin (operators' console) or user")
    p.add_argument("name")
    p.add_argument("role", choices=("admin", "user"))
    p.set_defaults(func=_run(_user_role))
    p = user_sub.add_parser("disable", parents=[common], help="refuse a user's logins (mail is still delivered)")
    p.add_argument("name")
    p.set_defaults(func=_run(_user_disable))
    p = user_sub.add_parser("enable", parents=[common], help="allow a disabled user's logins again")
    p.add_argument("name")
    p.set_defaults(func=_run(_user_enable))
    p = user_sub.add_parser("list", parents=[common, as_json], help="list users")
    p.set_defaults(func=_run(_user_list))

    address = sub.add_parser("address", help="map mail addresses to users")
    address_sub = address.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = address_sub.add_parser("add", parents=[common], help="deliver ADDR to USER")
    p.add_argument("address")
    p.add_argument("user")
    p.set_defaults(func=_run(_address_add))
    p = address_sub.add_parser("del", parents=[common], help="remove an address")
    p.add_argument("address")
    p.set_defaults(func=_run(_address_del))
    p = address_sub.add_parser("list", parents=[common, as_json], help="list addresses")
    p.add_argument("--user", default="", help="only this user's addresses")
    p.set_defaults(func=_run(_address_list))

    quota = sub.add_parser("quota", help="show or set a user's storage quota")
    quota_sub = quota.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = quota_sub.add_parser("set", parents=[common], help="set USER's limit in bytes (0 = unlimited)")
    p.add_argument("user")
    p.add_argument("bytes", type=int)
    p.set_defaults(func=_run(_quota_set))
    p = quota_sub.add_parser("show", parents=[common, as_json], help="usage and limit of USER")
    p.add_argument("user")
    p.set_defaults(func=_run(_quota_show))


def _run(action: Callable[[Admin, argparse.Namespace], None]) -> Callable[[argparse.Namespace], int]:
    def func(args: argparse.Namespace) -> int:
        from store.admin import Admin, AdminError, resolve_store_address

        command = f"mailha {args.command} {args.action}"
        try:
            admin = Admin.connect(resolve_store_address(args.store, args.data))
            try:
                action(admin, args)
            finally:
                admin.close()
        except AdminError as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            return 1
        return 0

    return func


def _read_password(prompt_name: str) -> str:
    """From stdin when it is not a terminal (first line), else a prompt asked twice."""
    from store.admin import AdminError

    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {prompt_name}: ")
        if getpass.getpass("Again: ") != password:
            raise AdminError("the passwords do not match")
    if not password:
        raise AdminError("empty password")
    return password


def _user_add(admin: Admin, args: argparse.Namespace) -> None:
    info = admin.add_user(args.name, _read_password(args.name), args.quota)
    if args.admin:
        admin.set_role(info.name, admin=True)
    role = " with the admin role" if args.admin else ""
    print(f"user {info.name} added (quota {info.quota_bytes or 'unlimited'}){role}")


def _user_role(admin: Admin, args: argparse.Namespace) -> None:
    admin.set_role(args.name, admin=args.role == "admin")
    print(f"role of {args.name}: {args.role}")


def _user_disable(admin: Admin, args: argparse.Namespace) -> None:
    admin.set_disabled(args.name, disabled=True)
    print(f"user {args.name} disabled")


def _user_enable(admin: Admin, args: argparse.Namespace) -> None:
    admin.set_disabled(args.name, disabled=False)
    print(f"user {args.name} enabled")


def _user_del(admin: Admin, args: argparse.Namespace) -> None:
    admin.delete_user(args.name)
    print(f"user {args.name} deleted")


def _user_passwd(admin: Admin, args: argparse.Namespace) -> None:
    admin.set_password(args.name, _read_password(args.name))
    print(f"password of {args.name} changed")


def _user_list(admin: Admin, args: argparse.Namespace) -> None:
    users = admin.list_users()
    rows: list[dict[str, Any]] = [
        {
            "name": u.name,
            "quota_bytes": u.quota_bytes,
            "usage_bytes": u.usage_bytes,
            "messages": u.messages,
            "addresses": list(u.addresses),
        }
        for u in users
    ]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'user':<24} {'messages':>9} {'usage':>12} {'quota':>12}  addresses")
    for r in rows:
        quota = r["quota_bytes"] or "unlimited"
        print(f"{r['name']:<24} {r['messages']:>9} {r['usage_bytes']:>12} {quota:>12}  {' '.join(r['addresses'])}")


def _address_add(admin: Admin, args: argparse.Namespace) -> None:
    info = admin.add_address(args.address, args.user)
    print(f"{info.address} -> {info.user}")


def _address_del(admin: Admin, args: argparse.Namespace) -> None:
    admin.delete_address(args.address)
    print(f"address {args.address} deleted")


def _address_list(admin: Admin, args: argparse.Namespace) -> None:
    rows = [{"address": a.address, "user": a.user} for a in admin.list_addresses(args.user)]
    if args.json:
        print(json.dumps(rows))
        return
    for r in rows:
        print(f"{r['address']} -> {r['user']}")


def _quota_set(admin: Admin, args: argparse.Namespace) -> None:
    info = admin.set_quota(args.user, args.bytes)
    print(f"quota of {info.user}: {info.limit_bytes or 'unlimited'} bytes (using {info.usage_bytes})")


def _quota_show(admin: Admin, args: argparse.Namespace) -> None:
    info = admin.quota(args.user)
    row = {
        "user": info.user,
        "usage_bytes": info.usage_bytes,
        "limit_bytes": info.limit_bytes,
        "messages": info.messages,
    }
    if args.json:
        print(json.dumps(row))
        return
    print(f"{info.user}: {info.usage_bytes} of {info.limit_bytes or 'unlimited'} bytes, {info.messages} messages")
