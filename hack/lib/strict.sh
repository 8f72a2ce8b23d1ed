# Strict mode for every shell script of the repository (sourced, not run): errexit, nounset,
# pipefail, and an ERR trap that says which file, line and command failed, with the call stack,
# before the script exits. Without it a failure under `set -e` ends a script silently (issue 15:
# `ls /var/log/pods | sort` on a machine without that directory ended .ci/run with exit 2 and no
# word).
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib/strict.sh"   # path relative to the script
#
# Best-effort regions that turn errexit off (`local -; set +e`) are not reported: only a failure
# that ends the script is. Each failure is reported once, where it happened, not again by every
# function it unwinds through.
# shellcheck shell=bash
set -Eeuo pipefail

__strict_on_err() { # STATUS COMMAND
  local status=$1 cmd=$2 i
  [[ $- == *e* ]] || return 0                      # errexit off: the caller handles it
  [[ ${__STRICT_REPORTED:-} == "$BASHPID" ]] && return 0
  __STRICT_REPORTED=$BASHPID
  local file=${BASH_SOURCE[1]:-?} line=${BASH_LINENO[0]:-?} text=""
  # The source line too: in a pipeline $BASH_COMMAND names the last command, not the one that
  # failed (`ls x | sort` reports `sort`).
  [[ -r $file ]] && text=$(sed -n "${line}{s/^[[:space:]]*//;p}" "$file" 2>/dev/null)
  printf 'FAILED (exit %s) at %s:%s: %s\n' "$status" "$file" "$line" "$cmd" >&2
  [[ -n $text && $text != "$cmd" ]] && printf '    line %s: %s\n' "$line" "$text" >&2
  for ((i = 1; i < ${#FUNCNAME[@]} - 1; i++)); do
    printf '    in %s() called at %s:%s\n' "${FUNCNAME[i]}" "${BASH_SOURCE[i + 1]:-?}" \
      "${BASH_LINENO[i]:-?}" >&2
  done
  return 0
}
trap '__strict_on_err "$?" "$BASH_COMMAND"' ERR
