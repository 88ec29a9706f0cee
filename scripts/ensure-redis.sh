#!/bin/sh
# Makes sure redis-server and redis-sentinel are installed. As root on Debian/Ubuntu it installs
# them with apt-get; otherwise it prints the exact command to run and fails.
set -eu
if command -v redis-server >/dev/null 2>&1 && command -v redis-sentinel >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing redis-server and redis-sentinel with apt-get..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-sentinel >/dev/null
  exit 0
fi
echo "redis-server and redis-sentinel are required. Install them with:" >&2
echo "  sudo apt-get update && sudo apt-get install -y redis-server redis-sentinel" >&2
exit 1
