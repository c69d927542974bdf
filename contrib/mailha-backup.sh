#!/bin/sh
# mailha backup run for systemd (mailha-backup.service) or cron:
# a full backup on Sundays (or when the repository has none), an incremental
# on the other days, then verify. Exit status: that of the failing step.
set -eu
MAILHA=${MAILHA:-/opt/mailha/.venv/bin/mailha}
REPO=${REPO:-/var/backups/mailha}
# A cluster node: the shared storage named in cluster.yaml; a standalone node: --data DIR.
STORE_OPTION=${STORE_OPTION:---config /etc/mailha/cluster.yaml}
KEEP=${KEEP:-4}
# Where node_exporter's textfile collector reads (it cannot enter the 0700 repository).
METRICS=${METRICS:-/var/lib/prometheus/node-exporter/mailha_backup.prom}

if [ "$(date +%u)" = 7 ] || ! ls -d "$REPO"/*-full >/dev/null 2>&1; then
    # shellcheck disable=SC2086 # STORE_OPTION is an option and its value
    "$MAILHA" backup create "$REPO" $STORE_OPTION --metrics-file "$METRICS" --keep "$KEEP"
else
    # shellcheck disable=SC2086
    "$MAILHA" backup create "$REPO" $STORE_OPTION --metrics-file "$METRICS" --since latest
fi
"$MAILHA" backup verify "$REPO" --metrics-file "$METRICS"
