#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying `neurogen sweep --slurm --submit` and for
# the Slurm test (tests/tests/sweep.rs): munge + slurmctld + slurmd on localhost, from Debian's
# packages. Run as root; safe to run again (it restarts the daemons with the same config).
#
#   scripts/slurm-local.sh [--install]     --install: apt-get install slurm-wlm munge first
#
# The node offers every core and 90 % of the memory; one partition `debug` (the default) with
# no time limit. ProctrackType=linuxproc and TaskPlugin=none need no cgroups, so it also runs
# in containers and VMs without systemd. Stop it with `pkill slurmd; pkill slurmctld; pkill munged`.
set -euo pipefail

if [ "${1:-}" = "--install" ] || ! command -v slurmctld >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
fi
[ "$(id -u)" -eq 0 ] || { echo "slurm-local.sh: run as root (the daemons switch users)" >&2; exit 2; }

cpus=$(nproc)
mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
state=/var/spool/slurm-local
mkdir -p /etc/slurm "$state/ctld" "$state/d" /var/log/slurm /run/munge
cat >/etc/slurm/slurm.conf <<EOF
ClusterName=neurogen-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# How long a job's credential lives, which is also how long a requeued task waits before it
# starts again (default 120 s; a task started sooner is killed: "Job credential revoked").
AuthInfo=cred_expire=10
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
SchedulerParameters=bf_interval=1,sched_interval=2
MinJobAge=600
MaxArraySize=10001
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# munge needs a key readable only by its user.
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key

pkill -x slurmd 2>/dev/null || true
pkill -x slurmctld 2>/dev/null || true
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
slurmctld
slurmd -N localhost

for _ in $(seq 60); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "slurm-local.sh: one-node cluster up ($cpus CPUs, $mem MB)"
    sinfo
    exit 0
  fi
  scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm-local.sh: the node did not come up; see /var/log/slurm/" >&2
sinfo >&2 || true
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
