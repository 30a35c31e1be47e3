#!/bin/sh
# Install wpack's build dependencies from Debian when any is missing.
# A no-op (no apt-get call at all) when every package is already installed,
# so `make` stays fast and works offline on a prepared machine.
set -eu
# pkg-config, man-db and groff-base: the install test reads wpack.pc and
# renders the installed man page (man -l).
PKGS="libzstd-dev libssl-dev libcjson-dev libhugetlbfs-dev pkg-config man-db groff-base"
# `deps.sh clang` (make CC=clang) adds clang; `deps.sh fuzz` (make fuzz) also
# libFuzzer's runtime, which Debian ships as libclang-rt-N-dev for clang N
# (a second step, once clang is there to say its N).
case "${1:-}" in
clang | fuzz) PKGS="$PKGS clang" ;;
esac
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
apt_install() {
    echo "wpack: installing missing build dependencies:$1" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "wpack: need root (or sudo) to install:$1" >&2; exit 1; }
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $1 >/dev/null
}
[ -n "$missing" ] && apt_install "$missing"
if [ "${1:-}" = fuzz ]; then
    f=$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
    [ -f "$f" ] || apt_install "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
fi
exit 0
