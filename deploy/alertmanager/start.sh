#!/bin/sh
# Starts Alertmanager with deploy/alertmanager/alertmanager.yml, each ${NAME} in it replaced by the
# environment variable NAME (the receivers' URLs: secrets of the incident tool, never in the file). An
# unset or empty variable stops the start with its name. Arguments go to Alertmanager.
#   ALERTMANAGER_CONFIG    the template (default: beside this script)
#   ALERTMANAGER_RENDERED  where the filled-in file goes (default /tmp/alertmanager.yml, mode 0600)
#   ALERTMANAGER_BIN       the executable (default: alertmanager on PATH, as in prom/alertmanager)
set -eu
here=$(dirname "$0")
template=${ALERTMANAGER_CONFIG:-$here/alertmanager.yml}
rendered=${ALERTMANAGER_RENDERED:-/tmp/alertmanager.yml}
umask 077
awk '
  {
    line = $0
    out = ""
    while (match(line, /\$\{[A-Z_][A-Z0-9_]*\}/)) {
      name = substr(line, RSTART + 2, RLENGTH - 3)
      if (!(name in ENVIRON) || ENVIRON[name] == "") {
        printf "alertmanager: %s is not set (a receiver URL, docs/deploy.md)\n", name > "/dev/stderr"
        failed = 1
        exit 1
      }
      out = out substr(line, 1, RSTART - 1) ENVIRON[name]
      line = substr(line, RSTART + RLENGTH)
    }
    print out line
  }
' "$template" > "$rendered"
exec "${ALERTMANAGER_BIN:-alertmanager}" --config.file="$rendered" "$@"
