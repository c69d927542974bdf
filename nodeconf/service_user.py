"""The unprivileged account store, imapd and lmtpd run as when started as root.

`scripts/bootstrap.sh` creates it (`mailha`: system user, no login shell, no
home). The launcher (standalone or the HA agent) stays root for what needs it
(addresses, namespaces, log files) and starts each service through `setpriv`:
new uid/gid, no supplementary groups, no new privileges, and for the front ends
only CAP_NET_BIND_SERVICE as an ambient capability (ports 143, 993, 24).
Directories the services write are handed to the account first.
"""

from __future__ import annotations

import os
import pathlib
import pwd
import stat
from dataclasses import dataclass

DEFAULT_SERVICE_USER = "mailha"


class ServiceUserError(ValueError):
    pass


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int

    def setpriv_options(self, *, bind_low_ports: bool) -> tuple[str, ...]:
        """Options for `setpriv` (before its `--`) that start a program as this account."""
        options: tuple[str, ...] = (f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--no-new-privs")
        if bind_low_ports:
            options += ("--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service")
        return options

    def argv(self, argv: tuple[str, ...], *, bind_low_ports: bool) -> tuple[str, ...]:
        return ("setpriv", *self.setpriv_options(bind_low_ports=bind_low_ports), "--", *argv)

    def own(self, *roots: pathlib.Path) -> None:
        """Hand each root and everything under it (symlinks not followed) to this account."""
        for root in roots:
            if not root.exists():
                continue
            os.chown(root, self.uid, self.gid, follow_symlinks=False)
            for dirpath, dirnames, filenames in os.walk(root):
                for name in dirnames + filenames:
                    os.chown(pathlib.Path(dirpath, name), self.uid, self.gid, follow_symlinks=False)

    def let_through(self, directory: pathlib.Path) -> None:
        """The launcher keeps `directory` (root, 0710) and this account's group may pass
        through it to what it owns inside, without listing or changing it."""
        os.chown(directory, 0, self.gid, follow_symlinks=False)
        os.chmod(directory, 0o710)

    def let_read(self, directory: pathlib.Path, *files: pathlib.Path) -> None:
        """Files the launcher keeps (root) that this account may read, e.g. a TLS key."""
        self.let_through(directory)
        for f in files:
            os.chown(f, 0, self.gid, follow_symlinks=False)
            os.chmod(f, 0o640)

    def check_reachable(self, path: pathlib.Path) -> None:
        """ServiceUserError unless every directory above `path` lets this account through."""
        for parent in path.resolve().parents:
            try:
                st = parent.stat()
            except FileNotFoundError:
                continue  # made later, by the launcher
            if st.st_uid == self.uid:
                ok = bool(st.st_mode & stat.S_IXUSR)
            elif st.st_gid == self.gid:
                ok = bool(st.st_mode & stat.S_IXGRP)
            else:
                ok = bool(st.st_mode & stat.S_IXOTH)
            if not ok:
                raise ServiceUserError(
                    f"{path}: the service user {self.name!r} cannot reach it ({parent} is "
                    f"{stat.filemode(st.st_mode)} {pwd.getpwuid(st.st_uid).pw_name}); use a directory "
                    "it can reach, or --service-user root to keep every service root (not recommended)"
                )


def resolve(name: str) -> ServiceUser | None:
    """The account to drop to, or None: not started as root, or asked to stay root."""
    if os.geteuid() != 0 or name == "root":
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ServiceUserError(
            f"service user {name!r} does not exist (scripts/bootstrap.sh creates 'mailha'; or: "
            f"useradd --system --no-create-home --shell /usr/sbin/nologin {name})"
        ) from None
    if entry.pw_uid == 0:
        raise ServiceUserError(f"service user {name!r} has uid 0; it must be an unprivileged account")
    return ServiceUser(name, entry.pw_uid, entry.pw_gid)
