#!/bin/sh
# make demo: the main job on the bundled tiny model, end to end —
# inspect -> convert -> keygen -> sign -> verify -> run -> parity.
# Everything is written under build/demo (recreated each time).
set -eu
WPACK=${1:-build/wpack}
TINY=tests/fixtures/tiny-a
OUT=build/demo
rm -rf "$OUT"
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }

step "wpack inspect $TINY/hf"
"$WPACK" inspect "$TINY/hf"

step "wpack convert $TINY/hf -o $OUT/tiny-a.ref --profile reference"
"$WPACK" convert "$TINY/hf" -o "$OUT/tiny-a.ref" --profile reference

step "wpack keygen -o $OUT/demo-key"
"$WPACK" keygen -o "$OUT/demo-key"

step "wpack sign $OUT/tiny-a.ref --key $OUT/demo-key.pem --dsse"
"$WPACK" sign "$OUT/tiny-a.ref" --key "$OUT/demo-key.pem" --dsse

step "wpack verify $OUT/tiny-a.ref --key $OUT/demo-key.pub.pem"
"$WPACK" verify "$OUT/tiny-a.ref" --key "$OUT/demo-key.pub.pem"

step "wpack run $OUT/tiny-a.ref --tokens 0,17,42,99,7 --max-new 8"
"$WPACK" run "$OUT/tiny-a.ref" --tokens 0,17,42,99,7 --max-new 8

step "wpack parity $OUT/tiny-a.ref --golden $TINY/golden-fp32.safetensors"
"$WPACK" parity "$OUT/tiny-a.ref" --golden "$TINY/golden-fp32.safetensors"

printf '\ndemo: PASS (build, signature and parity all checked; files in %s)\n' "$OUT"
