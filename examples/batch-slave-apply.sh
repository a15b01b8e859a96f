#!/usr/bin/env bash
# batch-slave-apply.sh: apply shipped replication logs to an UNMOUNTED lessfs-ts
# slave with replogtool. Run it from cron on the slave (examples/crontab.example).
# The slave's lessfs.cfg has REPLICATION=masterslave, REPLICATION_ROLE=slave,
# REPLICATION_PARTNER_IP=-1 and no REPLICATION_WATCHDIR. (A mounted slave with a
# REPLICATION_WATCHDIR applies files itself and needs no script.)
#
# For each INCOMING_DIR/replog.dta-N, in ascending N, that has its marker
# replog.dta-N.rdy (REQUIRE_RDY=1; batch-master-ship.sh writes it after the
# file is complete under its final name):
#   replogtool -r INCOMING_DIR/replog.dta-N -c SLAVE_CFG
# then move it to PROCESSED_DIR/replog.dta-N-processed (its marker to
# replog.dta-N-processed.rdy). replogtool checks the whole file (header, fs id,
# block size, sequence, trailer, CRCs) before it applies anything, and skips a
# file this slave already applied. The first file without a marker ends the
# run (it is still arriving); the first failure ends it with replogtool's
# message and leaves the file where it is. Other names (.replog.dta-N.part
# copies in progress, -processed files) are ignored.
#
# Settings: the variables below, overridable from the environment, e.g.
#   SLAVE_CFG=/etc/lessfs-slave.cfg INCOMING_DIR=/var/lib/lessfs/incoming \
#   batch-slave-apply.sh
# Options: -h show this help.
set -euo pipefail

# The slave's lessfs.cfg.
SLAVE_CFG=${SLAVE_CFG:-}
# Where the master ships files (its SLAVE_WATCHDIR in batch-master-ship.sh).
INCOMING_DIR=${INCOMING_DIR:-}
PROCESSED_DIR=${PROCESSED_DIR:-${INCOMING_DIR%/}/processed}
# 1: apply a file only once its .rdy marker exists; 0: no markers are written
# (the files arrive by an atomic rename, as batch-master-ship.sh does).
REQUIRE_RDY=${REQUIRE_RDY:-1}
# The replogtool command (word-split), e.g. "node /opt/lessfs-ts/bin/replogtool.js".
REPLOGTOOL=${REPLOGTOOL:-replogtool}
# Held with flock for the whole run: two runs never overlap.
LOCK_FILE=${LOCK_FILE:-${INCOMING_DIR%/}/.batch-slave-apply.lock}
# At most this many files per run (the rest go in the next run).
MAX_FILES=${MAX_FILES:-1000}

PROG=batch-slave-apply

log() { printf '%s %s[%d] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PROG" "$$" "$*" >&2; }
die() { log "error: $*"; exit 1; }
log_lines() {
  local line
  while IFS= read -r line; do
    if [[ -n $line ]]; then log "replogtool: $line"; fi
  done <<<"$1"
}
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  '') ;;
  *) usage >&2; exit 2 ;;
esac

[[ -n $SLAVE_CFG ]] || die "set SLAVE_CFG (the slave's lessfs.cfg)"
[[ -f $SLAVE_CFG ]] || die "SLAVE_CFG $SLAVE_CFG is not a file"
[[ -n $INCOMING_DIR ]] || die "set INCOMING_DIR (where the master ships replog.dta-N files)"
[[ -d $INCOMING_DIR ]] || die "INCOMING_DIR $INCOMING_DIR is not a directory"
[[ $REQUIRE_RDY == 0 || $REQUIRE_RDY == 1 ]] || die "REQUIRE_RDY must be 0 or 1, not '$REQUIRE_RDY'"
[[ $MAX_FILES =~ ^[1-9][0-9]{0,5}$ ]] || die "MAX_FILES must be between 1 and 999999, not '$MAX_FILES'"
read -r -a replogtool <<<"$REPLOGTOOL"
[[ ${#replogtool[@]} -gt 0 ]] || die "REPLOGTOOL must not be empty"

exec 9>>"$LOCK_FILE"
if ! flock -n 9; then
  log "another run holds $LOCK_FILE: leaving the files to it"
  exit 0
fi

# META_PATH as lessfs reads it: the environment overrides the file; in the
# file the last KEY=VALUE line wins; ' #' starts a comment; quotes are dropped.
meta_path() {
  if [[ -n ${META_PATH:-} ]]; then printf '%s' "$META_PATH"; return; fi
  local line val=
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    if [[ $line =~ ^[[:space:]]*META_PATH[[:space:]]*=(.*)$ ]]; then val=${BASH_REMATCH[1]}; fi
  done <"$SLAVE_CFG"
  if [[ $val =~ ^[[:space:]]*\"([^\"]*)\" || $val =~ ^[[:space:]]*\'([^\']*)\' ]]; then
    val=${BASH_REMATCH[1]}
  else
    val=${val%%[[:space:]]#*}
  fi
  val=${val#"${val%%[![:space:]]*}"}
  val=${val%"${val##*[![:space:]]}"}
  printf '%s' "$val"
}

# replogtool refuses a slave that is mounted (or being checked): say why here
# instead of failing on every file. The lock is META_PATH/lessfs.lock, "PID PURPOSE".
meta=$(meta_path)
if [[ -n $meta && -f $meta/lessfs.lock ]]; then
  owner=$(head -n 1 -- "$meta/lessfs.lock" 2>/dev/null || true) # may vanish meanwhile: then it is free
  pid=${owner%% *}
  purpose=${owner#"$pid"}
  purpose=${purpose# }
  if [[ $pid =~ ^[1-9][0-9]*$ && -d /proc/$pid ]]; then
    if [[ $purpose == "lessfs mount"* ]]; then
      log "the slave is mounted (pid $pid, ${purpose}): replogtool refuses a mounted slave, so nothing is applied." \
        "Unmount it (fusermount -u), or let the mount apply the files itself: set REPLICATION_WATCHDIR=$INCOMING_DIR in $SLAVE_CFG and drop this cron job"
    else
      log "the slave's filesystem is in use by pid $pid (${purpose:-unknown}); trying again next run"
    fi
    exit 0
  fi
fi

shopt -s nullglob
sequences=()
for path in "$INCOMING_DIR"/replog.dta-*; do
  n=${path##*/replog.dta-}
  if [[ $n =~ ^[1-9][0-9]{0,15}$ && -f $path ]]; then sequences+=("$n"); fi
done
shopt -u nullglob
if [[ ${#sequences[@]} -eq 0 ]]; then
  exit 0
fi
mapfile -t sequences < <(printf '%s\n' "${sequences[@]}" | sort -n)
if [[ ${#sequences[@]} -gt $MAX_FILES ]]; then
  log "${#sequences[@]} files waiting; applying the first $MAX_FILES in this run (MAX_FILES)"
  sequences=("${sequences[@]:0:MAX_FILES}")
fi

applied=0
for n in "${sequences[@]}"; do
  name=replog.dta-$n
  file=$INCOMING_DIR/$name
  if [[ $REQUIRE_RDY == 1 && ! -e $file.rdy ]]; then
    log "$name has no marker $name.rdy yet (still arriving?): stopping here, files after it wait"
    break
  fi
  if out=$("${replogtool[@]}" -r "$file" -c "$SLAVE_CFG" 2>&1 </dev/null); then
    log_lines "$out"
  else
    rc=$?
    log "replogtool -r $file -c $SLAVE_CFG failed (exit $rc):"
    log_lines "$out"
    die "stopping: $name stays in $INCOMING_DIR, nothing after it applied"
  fi
  mkdir -p -- "$PROCESSED_DIR"
  mv -f -- "$file" "$PROCESSED_DIR/$name-processed"
  if [[ -e $file.rdy ]]; then mv -f -- "$file.rdy" "$PROCESSED_DIR/$name-processed.rdy"; fi
  applied=$((applied + 1))
  log "applied $name; moved to $PROCESSED_DIR/$name-processed"
done
if [[ $applied -gt 0 ]]; then log "applied $applied file(s)"; fi
