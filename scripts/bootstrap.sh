#!/usr/bin/env bash
# Install everything mailha needs on a fresh Debian 12 machine (run as root):
# Debian packages for the real parts (ZooKeeper, isync, Postfix, nftables) and
# a .venv with the pinned Python dependencies. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-dev build-essential openjdk-17-jre-headless zookeeper
              isync neomutt postfix nftables iproute2 openssl procps psmisc
              dovecot-imapd dovecot-lmtpd chromium libjemalloc2)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string mailha.test" | debconf-set-selections
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Dovecot is the reference server for benchmarks and the differential tests, which
# start their own throwaway instance; the system-wide one stays stopped and disabled.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
fi
if [ -f /run/dovecot/master.pid ] && ! grep -q mailha-dovecot "/proc/$(cat /run/dovecot/master.pid)/cmdline" 2>/dev/null; then
  kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
fi

# The unprivileged system account store, imapd and lmtpd run as when started
# as root (no login shell, no home); only the HA agent keeps root.
if [ "$(id -u)" = 0 ] && ! getent passwd mailha >/dev/null; then
  getent group mailha >/dev/null || groupadd --system mailha
  useradd --system --gid mailha --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mailha
fi

stamp=.venv/.mailha-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ]; then
  echo "bootstrap: building .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/python scripts/genproto.py
  .venv/bin/pip install -q --disable-pip-version-check -e .
  touch "$stamp"
fi
# imapd's hot modules compiled with mypyc (quick when current); MAILHA_COMPILE=0 removes any
# built before instead, so the tree runs them as plain Python (imapd/SERVER.md).
.venv/bin/python scripts/build_compiled.py --as-configured
