#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost, for CI and the integration tests.
#
#   bash slurm/local-cluster.sh start    # installs Debian's packages if missing, starts the daemons (~2 s)
#   bash slurm/local-cluster.sh status   # exit 0 when the controller answers and the node is usable
#   bash slurm/local-cluster.sh stop     # stops exactly the daemons this script started, by pid file
#
# Daemons, in start order: munged, a private MariaDB (unix socket only), slurmdbd (so `sacct`
# works: submitit learns job states from it), slurmctld, slurmd. Needs root (apt, /run, /etc/slurm).
# State, config, logs and pid files live under $HARNESS_SLURM_ROOT (default /tmp/harness-slurm).
# Why each unusual setting is there: see docs/launch.md, "The local cluster".
set -euo pipefail

ROOT=${HARNESS_SLURM_ROOT:-/tmp/harness-slurm}
export SLURM_CONF=$ROOT/slurm.conf
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)   # stop order (reverse of start)
DB_SOCKET=/run/mysqld/mysqld.sock                     # where slurmdbd's MySQL client looks for it
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

log() { echo "local-cluster: $*" >&2; }

wait_until() {  # wait_until DESCRIPTION CMD... : retry CMD for up to 30 s
  local what=$1; shift
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "timed out waiting for $what (logs in $ROOT)"; return 1
}

stop_cluster() {  # TERM each daemon whose pid file still names it, then wait for all of them
  local pids=() d f pid
  for d in "${DAEMONS[@]}"; do
    f=$ROOT/$d.pid
    [ -s "$f" ] || continue
    pid=$(cat "$f"); rm -f "$f"
    if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$d" ]; then kill "$pid" && pids+=("$pid"); fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  done
}

install_packages() {
  command -v slurmctld >/dev/null && command -v mariadbd >/dev/null && command -v slurmdbd >/dev/null && return 0
  log "installing ${PACKAGES[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

write_config() {
  local gres_node=
  if [ -e /dev/tty1 ]; then  # two fake GPUs: lets --gpus-per-node submissions be accepted
    gres_node="Gres=gpu:2"; echo 'Name=gpu File=/dev/tty[0-1]' > "$ROOT/gres.conf"
  fi
  local mem_mb=$(( $(free -m | awk '/^Mem:/{print $2}') - 1024 ))
  cat > "$SLURM_CONF" <<CONF
ClusterName=harness-ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
# Requeued jobs wait for the old credential to expire (default 120 s).
AuthInfo=cred_expire=10
StateSaveLocation=$ROOT/ctld
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/slurmctld.pid
SlurmdPidFile=$ROOT/slurmd.pid
SlurmctldLogFile=$ROOT/slurmctld.log
SlurmdLogFile=$ROOT/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that gives no --mem is given the whole node.
DefMemPerCPU=1024
# The main scheduler loop (default every 60 s) is what starts a requeued job.
SchedulerParameters=bf_interval=1,sched_interval=2
AccountingStorageType=accounting_storage/slurmdbd
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
GresTypes=gpu
NodeName=localhost $gres_node CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  cat > "$ROOT/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$ROOT/slurmdbd.pid
LogFile=$ROOT/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=harness_acct_db
CONF
  chmod 600 "$ROOT/slurmdbd.conf"
  # Clients that lose SLURM_CONF (submitit.helpers.clean_env) read /etc/slurm/slurm.conf;
  # a real file there belongs to someone else and is left alone.
  if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
    ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
  fi
}

start_munged() {
  [ -s /etc/munge/munge.key ] || { mungekey --create --force; chown munge:munge /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$ROOT/munged.pid"
}

start_mariadb() {  # a private database in $ROOT/db, root by unix-socket auth, no TCP
  mariadb-install-db --no-defaults --user=root --datadir="$ROOT/db" \
    --auth-root-authentication-method=socket > "$ROOT/mariadb-install.log" 2>&1
  setsid /usr/sbin/mariadbd --no-defaults --user=root --datadir="$ROOT/db" --socket="$DB_SOCKET" \
    --skip-networking --pid-file="$ROOT/mariadbd.pid" --log-error="$ROOT/mariadbd.log" \
    </dev/null >/dev/null 2>&1 &
  wait_until "mariadbd" mariadb-admin --socket="$DB_SOCKET" ping
}

node_idle() { [ "$(sinfo -h -n localhost -o %T 2>/dev/null)" = idle ]; }

start_cluster() {
  stop_cluster
  local t0=$SECONDS
  install_packages
  local t1=$SECONDS
  rm -rf "$ROOT"
  mkdir -p "$ROOT/ctld" "$ROOT/spool" /run/munge /run/mysqld /etc/slurm
  chown munge:munge /run/munge
  write_config
  start_munged
  start_mariadb
  # slurmdbd first: slurmctld registers the cluster in the accounting database when it starts.
  slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  wait_until "slurmdbd" sacctmgr -n list cluster
  slurmctld
  slurmd -N localhost
  wait_until "an idle node" node_idle
  log "up: install $((t1 - t0)) s, start $((SECONDS - t1)) s. export SLURM_CONF=$SLURM_CONF"
}

case "${1:-}" in
  start) start_cluster ;;
  stop) stop_cluster ;;
  status) node_idle || sinfo -h -n localhost -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
