#!/bin/sh
# Makes sure programs from Debian packages are installed: ensure-packages.sh <program>:<package> ...
# (also looked for in /usr/sbin, which a non-root PATH may lack). As root on Debian/Ubuntu it
# installs the missing packages with apt-get; otherwise it prints the exact command and fails.
set -eu
missing=""
for spec in "$@"; do
  program=${spec%%:*}
  package=${spec#*:}
  if ! command -v "$program" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$program" ]; then
    missing="$missing $package"
  fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing$missing with apt-get..."
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  exit 0
fi
echo "These packages are required:$missing. Install them with:" >&2
echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
exit 1
