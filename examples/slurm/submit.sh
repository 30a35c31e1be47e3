#!/bin/sh
# Submit the per-rank array and the merge+sign step after it (docs/distributed.md §3).
#   CKPT=/shared/DeepSeek-V4-Pro WORK=/shared/wpack KEY=/secure/signer.pem sh examples/slurm/submit.sh
set -eu
here=$(dirname "$0")
array=$(sbatch --parsable --export=ALL "$here/convert-ranks.sbatch")
sbatch --dependency=afterok:"$array" --export=ALL "$here/merge-sign.sbatch"
