#!/usr/bin/env bash
# batch-master-ship.sh: ship a batch-mode lessfs-ts master's rotated replication
# logs to the slave. Run it from cron on the master (examples/crontab.example).
#
# For each complete rotated log BLOCKDATA_PATH/replog.dta-N, in ascending N:
#   1. scp it to SLAVE_HOST:SLAVE_WATCHDIR/.replog.dta-N.part (a name the
#      slave ignores, so it never sees half a file);
#   2. on the slave, over ssh: sync it, mv it to replog.dta-N (atomic within
#      one filesystem), write the marker replog.dta-N.rdy (WRITE_RDY=1);
#   3. only then move the local file to SHIPPED_DIR (KEEP_SHIPPED=1) or delete it.
# The live log replog.dta and replog.dta.next are never touched. The first
# failure stops the run; the next run starts again from the oldest file left
# (a slave skips a file it has already applied, so shipping twice is harmless).
#
# Settings: the variables below, overridable from the environment, e.g.
#   BLOCKDATA_PATH=/data/dta SLAVE_HOST=backup@slave \
#   SLAVE_WATCHDIR=/var/lib/lessfs/incoming batch-master-ship.sh
# Options: -h show this help.
set -euo pipefail

# Where the master writes replog.dta and rotates replog.dta-N (its BLOCKDATA_PATH).
BLOCKDATA_PATH=${BLOCKDATA_PATH:-}
# The slave, as ssh/scp name it: host, user@host, or an alias from ~/.ssh/config.
SLAVE_HOST=${SLAVE_HOST:-}
# Directory on the slave the files go to: its REPLICATION_WATCHDIR (a mounted
# slave), or the INCOMING_DIR of batch-slave-apply.sh (a slave fed by replogtool).
SLAVE_WATCHDIR=${SLAVE_WATCHDIR:-}
# Commands and their options (word-split; no quoting inside). BatchMode=yes
# makes a missing key an error instead of a password prompt nobody answers.
SSH=${SSH:-ssh}
SCP=${SCP:-scp}
SSH_OPTS=${SSH_OPTS:--o BatchMode=yes -o ConnectTimeout=30}
SCP_OPTS=${SCP_OPTS:--q -p -o BatchMode=yes -o ConnectTimeout=30}
# 1: move shipped files to SHIPPED_DIR; 0: delete them once on the slave.
KEEP_SHIPPED=${KEEP_SHIPPED:-1}
SHIPPED_DIR=${SHIPPED_DIR:-${BLOCKDATA_PATH%/}/shipped}
# 1: write replog.dta-N.rdy beside each file on the slave (for slave-side
# scripts that wait for a marker, like batch-slave-apply.sh).
WRITE_RDY=${WRITE_RDY:-1}
# 1: run sync on the slave: the file's data before its rename, the directory after.
REMOTE_SYNC=${REMOTE_SYNC:-1}
# 1: rotate the live log first (echo 1 > MOUNTPOINT/.lessfs/replication/rotate_replog),
# so what was written up to now ships in this run. MOUNTPOINT: the master's mount.
ROTATE_FIRST=${ROTATE_FIRST:-0}
MOUNTPOINT=${MOUNTPOINT:-}
# Held with flock for the whole run: two runs never overlap.
LOCK_FILE=${LOCK_FILE:-${BLOCKDATA_PATH%/}/.batch-master-ship.lock}
# At most this many files per run (the rest go in the next run).
MAX_FILES=${MAX_FILES:-1000}

PROG=batch-master-ship

log() { printf '%s %s[%d] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PROG" "$$" "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  '') ;;
  *) usage >&2; exit 2 ;;
esac

is_flag() { [[ $2 == 0 || $2 == 1 ]] || die "$1 must be 0 or 1, not '$2'"; }
[[ -n $BLOCKDATA_PATH ]] || die "set BLOCKDATA_PATH (the master's BLOCKDATA_PATH)"
[[ -d $BLOCKDATA_PATH ]] || die "BLOCKDATA_PATH $BLOCKDATA_PATH is not a directory"
[[ -n $SLAVE_HOST ]] || die "set SLAVE_HOST (the slave's host name, user@host or ssh alias)"
[[ $SLAVE_HOST != -* ]] || die "SLAVE_HOST '$SLAVE_HOST' starts with '-'"
# scp (legacy protocol) hands the remote path to the slave's shell: allow only
# characters that need no quoting there.
[[ $SLAVE_WATCHDIR =~ ^/[A-Za-z0-9._/+-]*$ ]] ||
  die "SLAVE_WATCHDIR must be an absolute path of letters, digits and ._/+- (got '$SLAVE_WATCHDIR')"
SLAVE_WATCHDIR=${SLAVE_WATCHDIR%/}
is_flag KEEP_SHIPPED "$KEEP_SHIPPED"
is_flag WRITE_RDY "$WRITE_RDY"
is_flag REMOTE_SYNC "$REMOTE_SYNC"
is_flag ROTATE_FIRST "$ROTATE_FIRST"
[[ $MAX_FILES =~ ^[1-9][0-9]{0,5}$ ]] || die "MAX_FILES must be between 1 and 999999, not '$MAX_FILES'"

read -r -a ssh_cmd <<<"$SSH"
read -r -a scp_cmd <<<"$SCP"
read -r -a ssh_opts <<<"$SSH_OPTS"
read -r -a scp_opts <<<"$SCP_OPTS"
[[ ${#ssh_cmd[@]} -gt 0 && ${#scp_cmd[@]} -gt 0 ]] || die "SSH and SCP must not be empty"

# scp needs an IPv6 address in brackets (user@[::1]:path); ssh takes it bare.
scp_host=$SLAVE_HOST
host_part=${SLAVE_HOST##*@}
if [[ $host_part == *:* && $host_part != \[* ]]; then
  scp_host="${SLAVE_HOST%"$host_part"}[$host_part]"
fi

exec 9>>"$LOCK_FILE"
if ! flock -n 9; then
  log "another run holds $LOCK_FILE: leaving the files to it"
  exit 0
fi

if [[ $ROTATE_FIRST == 1 ]]; then
  [[ -n $MOUNTPOINT ]] || die "ROTATE_FIRST=1 needs MOUNTPOINT (where the master is mounted)"
  ctl=$MOUNTPOINT/.lessfs/replication/rotate_replog
  [[ -e $ctl ]] || die "$ctl does not exist: is the master mounted at $MOUNTPOINT?"
  # The write returns once the rotated file is in place (EPERM unless this is a
  # batch-mode master).
  echo 1 >"$ctl" || die "rotation through $ctl failed (is $MOUNTPOINT a batch-mode master: REPLICATION_PARTNER_IP=-1?)"
  log "rotated the live log through $ctl"
fi

# Complete rotated logs only: replog.dta-N with N a positive integer. The master
# renames a log to this name after its trailer is written and synced; the live
# log, replog.dta.next and any other names never match.
shopt -s nullglob
sequences=()
for path in "$BLOCKDATA_PATH"/replog.dta-*; do
  n=${path##*/replog.dta-}
  if [[ $n =~ ^[1-9][0-9]{0,15}$ && -f $path ]]; then sequences+=("$n"); fi
done
shopt -u nullglob
if [[ ${#sequences[@]} -eq 0 ]]; then
  exit 0
fi
mapfile -t sequences < <(printf '%s\n' "${sequences[@]}" | sort -n)

if [[ ${#sequences[@]} -gt $MAX_FILES ]]; then
  log "${#sequences[@]} files waiting; shipping the first $MAX_FILES in this run (MAX_FILES)"
  sequences=("${sequences[@]:0:MAX_FILES}")
fi

q() { printf '%q' "$1"; }

prev=
shipped=0
for n in "${sequences[@]}"; do
  name=replog.dta-$n
  file=$BLOCKDATA_PATH/$name
  if [[ -n $prev && $n -ne $((prev + 1)) ]]; then
    log "warning: replog.dta-$((prev + 1)) is missing here (moved by hand?): the slave will stop at the gap"
  fi
  prev=$n

  # The master writes the trailer (magic LESSFSRT in the last 32 bytes) before
  # it renames; a file without it was not made by the rotation.
  size=$(stat -c %s -- "$file")
  [[ $size -ge 69 ]] || die "$file is only $size bytes: not a rotated log; stopping"
  [[ $(head -c 8 -- "$file") == LESSFSRL ]] || die "$file does not start with a replication log header (LESSFSRL); stopping"
  [[ $(tail -c 32 -- "$file" | head -c 8) == LESSFSRT ]] || die "$file has no trailer (LESSFSRT): not a complete rotated log; stopping"
  if [[ $KEEP_SHIPPED == 1 && -e $SHIPPED_DIR/$name ]]; then
    die "$SHIPPED_DIR/$name already exists (was the master re-formatted? move the old shipped files away); stopping before shipping $name"
  fi

  part=$SLAVE_WATCHDIR/.$name.part
  final=$SLAVE_WATCHDIR/$name
  if ! "${scp_cmd[@]}" "${scp_opts[@]}" -- "$file" "$scp_host:$part" </dev/null; then
    die "copying $name to $scp_host:$part failed; stopping (nothing after it shipped)"
  fi
  # One ssh call: the data durable, then the name appears atomically, then the
  # marker (so a marker always means a complete file under its final name).
  remote="set -e"
  if [[ $REMOTE_SYNC == 1 ]]; then remote+="; sync -- $(q "$part")"; fi
  remote+="; mv -f -- $(q "$part") $(q "$final")"
  if [[ $WRITE_RDY == 1 ]]; then remote+="; : > $(q "$final.rdy")"; fi
  if [[ $REMOTE_SYNC == 1 ]]; then remote+="; sync -- $(q "$SLAVE_WATCHDIR")"; fi
  if ! "${ssh_cmd[@]}" "${ssh_opts[@]}" -- "$SLAVE_HOST" "$remote" </dev/null; then
    die "renaming $part to $final on $SLAVE_HOST failed; stopping ($name stays here and ships again next run)"
  fi

  if [[ $KEEP_SHIPPED == 1 ]]; then
    mkdir -p -- "$SHIPPED_DIR"
    mv -- "$file" "$SHIPPED_DIR/$name" || die "$name is on the slave but could not be moved to $SHIPPED_DIR; stopping"
  else
    rm -f -- "$file" || die "$name is on the slave but could not be deleted here; stopping"
  fi
  shipped=$((shipped + 1))
  log "shipped $name ($size bytes) to $SLAVE_HOST:$final"
done
log "shipped $shipped file(s), replog.dta-${sequences[0]}..replog.dta-$prev"
