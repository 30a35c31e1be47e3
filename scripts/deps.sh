#!/bin/sh
# Install wpack's build dependencies from Debian when any is missing.
# A no-op (no apt-get call at all) when every package is already installed,
# so `make` stays fast and works offline on a prepared machine.
set -eu
# pkg-config, man-db and groff-base: the install test reads wpack.pc and
# renders the installed man page (man -l).
PKGS="libzstd-dev libssl-dev libcjson-dev libhugetlbfs-dev pkg-config man-db groff-base"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "wpack: installing missing build dependencies:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "wpack: need root (or sudo) to install:$missing" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
