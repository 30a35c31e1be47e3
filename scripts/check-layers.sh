#!/bin/sh
# check-layers.sh — no #include runs upward between wpack's layers
# (docs/architecture.md).  A folder may include its own headers and those of
# any folder listed before it, and another folder's public headers only
# (never its internal.h or *_priv.h); prints each violation, exits 1 if any.
# Usage: check-layers.sh [ROOT]   (default: the checkout this script is in)
cd "${1:-$(dirname "$0")/..}" || exit 2
LAYERS="common hf model quant format trust convert runtime verify cli"
rank() { i=0; for l in $LAYERS; do [ "$l" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; echo -1; }
bad=0
for dir in $LAYERS; do
    me=$(rank "$dir")
    for f in "$dir"/*.c "$dir"/*.h; do
        [ -f "$f" ] || continue
        for priv in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\/[a-z_]*\(internal\|_priv\)\.h\)".*/\1/p' "$f"); do
            case "$priv" in "$dir"/*) ;; *) echo "$f: includes \"$priv\": a private header of another folder"; bad=1 ;; esac
        done
        for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\)\/[^"]*".*/\1/p' "$f"); do
            r=$(rank "$inc")
            if [ "$r" -lt 0 ]; then
                echo "$f: includes \"$inc/...\": not a layer of docs/architecture.md"; bad=1
            elif [ "$r" -gt "$me" ]; then
                echo "$f: includes \"$inc/...\": $inc is above $dir"; bad=1
            fi
        done
    done
done
exit $bad
