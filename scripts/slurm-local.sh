#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm executor's integration tests.
#   scripts/slurm-local.sh start   start munged, slurmctld and slurmd (idempotent); wait until idle
#   scripts/slurm-local.sh stop    stop them
# State, logs and the configuration live in $MEXA_SLURM_DIR (default /tmp/mexa-slurm). Needs
# root (the daemons run as root here) and Debian's slurmctld, slurmd, slurm-client, munge
# (scripts/setup-system.sh installs them). No systemd is assumed.
set -euo pipefail
dir="${MEXA_SLURM_DIR:-/tmp/mexa-slurm}"
cmd="${1:-start}"

running() { sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

if [ "$cmd" = stop ]; then
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  exit 0
fi

if running; then echo "slurm: already running"; exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "error: starting the local Slurm needs root" >&2; exit 1; }
mkdir -p "$dir"/{state,spool,log}
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=mexa
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p /etc/slurm
ln -sf "$dir/slurm.conf" /etc/slurm/slurm.conf
# munge: a key, its directories, and the daemon as user munge.
if ! pgrep -x munged >/dev/null; then
  [ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
  su -s /bin/sh munge -c /usr/sbin/munged
fi
pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 0.5
slurmctld -c -f "$dir/slurm.conf"
slurmd -N localhost -f "$dir/slurm.conf"
for _ in $(seq 1 120); do
  if running; then echo "slurm: node idle ($cpus CPUs), config $dir/slurm.conf"; exit 0; fi
  sleep 0.5
done
echo "error: Slurm did not come up; logs in $dir/log" >&2
tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 1
