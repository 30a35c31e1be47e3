#!/bin/sh
# make demo: the main job on the bundled tiny model.
set -eu
WPACK=${1:-build/wpack}
TINY=tests/fixtures/tiny-a
echo "== wpack inspect $TINY/hf"
"$WPACK" inspect "$TINY/hf"
