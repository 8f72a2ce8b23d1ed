# Shared by e2e/cluster/apiserver.sh and cluster.sh (sourced, not run): process bookkeeping by
# pid + start time, free loopback ports, bounded waits, detached launches. Callers define
# log(), die() and TIMEOUT.
# shellcheck shell=bash

# ---- process bookkeeping: DIR/pids holds "NAME PID STARTTIME" lines -------------------------
# STARTTIME (field 22 of /proc/PID/stat) guards against signalling a reused pid.
proc_starttime() { # PID -> start time in clock ticks, or nothing if gone
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }             # drop "pid (comm) ", comm may contain spaces
  # shellcheck disable=SC2086
  set -- $stat                  # now $1 is field 3 (state)
  [[ $1 != Z && $1 != X ]] || return 1   # a zombie has exited
  printf '%s\n' "${20}"
}
alive() { # PID STARTTIME
  local st
  st=$(proc_starttime "$1") || return 1
  [[ $st == "$2" ]]
}

record_pid() { # DIR NAME PID
  local st
  st=$(proc_starttime "$3") || st=0
  printf '%s %s %s\n' "$2" "$3" "$st" >>"$1/pids"
}

stop_dir() { # DIR: TERM in reverse start order, wait, KILL what is left
  local dir=$1 name pid st
  [[ -f $dir/pids ]] || { log "no $dir/pids: nothing to stop"; return 0; }
  local -a names=() pids=() sts=()
  while read -r name pid st; do
    [[ -n ${pid:-} ]] || continue
    names+=("$name"); pids+=("$pid"); sts+=("$st")
  done <"$dir/pids"
  local i deadline
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    if alive "${pids[i]}" "${sts[i]}"; then
      kill -TERM "${pids[i]}" 2>/dev/null || true
      deadline=$((SECONDS + 20))
      while alive "${pids[i]}" "${sts[i]}" && ((SECONDS < deadline)); do sleep 0.1; done
      if alive "${pids[i]}" "${sts[i]}"; then
        log "${names[i]} (pid ${pids[i]}) did not exit on TERM within 20s: KILL"
        kill -KILL "${pids[i]}" 2>/dev/null || true
        deadline=$((SECONDS + 10))
        while alive "${pids[i]}" "${sts[i]}" && ((SECONDS < deadline)); do sleep 0.1; done
      fi
      if alive "${pids[i]}" "${sts[i]}"; then
        die "${names[i]} (pid ${pids[i]}) is still running"
      fi
      log "stopped ${names[i]} (pid ${pids[i]})"
    fi
  done
  mv -f "$dir/pids" "$dir/pids.stopped"
}

status_dir() {
  local dir=$1 name pid st rc=0
  [[ -f $dir/pids ]] || { echo "not started (no $dir/pids)"; return 1; }
  while read -r name pid st; do
    if alive "$pid" "$st"; then echo "$name $pid running"; else echo "$name $pid NOT running"; rc=1; fi
  done <"$dir/pids"
  return "$rc"
}

# ---- ports ----------------------------------------------------------------------------------
port_in_use() { # PORT: any TCP socket (v4/v6, any state) bound to it locally
  local hex
  hex=$(printf ':%04X ' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '{print $2" "}' | grep -qF "$hex"
}
declare -A TAKEN=()
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 30000))
    [[ -z ${TAKEN[$p]:-} ]] || continue
    port_in_use "$p" && continue
    TAKEN[$p]=1
    printf '%s\n' "$p"
    return 0
  done
  die "no free TCP port found"
}

# ---- waiting --------------------------------------------------------------------------------
wait_until() { # DESCRIPTION PID STARTTIME COMMAND...: poll COMMAND until it succeeds
  local what=$1 pid=$2 st=$3; shift 3
  local deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    alive "$pid" "$st" || { log "$what: process $pid exited"; return 1; }
    sleep 0.2
  done
  log "$what: not ready after ${TIMEOUT}s"
  return 1
}

launch() { # DIR NAME COMMAND...: start in the background, detached, logs to DIR/NAME.log
  local dir=$1 name=$2; shift 2
  # New session, no terminal, no inherited stdio: a caller reading our output (e.g. a Rust
  # test via Command::output) is not kept waiting by the daemons.
  setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
  LAUNCHED_PID=$!
  record_pid "$dir" "$name" "$LAUNCHED_PID"
  LAUNCHED_ST=$(awk -v n="$name" '$1 == n {s = $3} END {print s}' "$dir/pids")
}

