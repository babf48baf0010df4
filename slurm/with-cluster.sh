#!/usr/bin/env bash
# Run a command with the local SLURM cluster up:  bash slurm/with-cluster.sh CMD [ARGS...]
#
# - A cluster that already answers (a developer started it) is used and left running.
# - Otherwise, where this machine can run one (root, and either the packages or apt-get present),
#   it is started and stopped again by pid file when CMD exits, whatever its outcome.
# - Elsewhere CMD runs without a cluster; tests marked `slurm` then skip and say why.
# The exit status is CMD's (or the start's, when starting a cluster that could be started fails).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster="$here/local-cluster.sh"
export SLURM_CONF=${HARNESS_SLURM_ROOT:-/tmp/harness-slurm}/slurm.conf

can_run_cluster() {
  [ "$(id -u)" = 0 ] && { command -v slurmctld >/dev/null || command -v apt-get >/dev/null; }
}

if [ -s "$SLURM_CONF" ] && bash "$cluster" status; then
  echo "with-cluster: using the SLURM cluster that is already up" >&2
elif can_run_cluster; then
  trap 'bash "$cluster" stop' EXIT
  bash "$cluster" start
else
  unset SLURM_CONF
  echo "with-cluster: no SLURM cluster here (needs root and apt-get); SLURM tests will skip" >&2
fi
"$@"
