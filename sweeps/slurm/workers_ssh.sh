#!/bin/bash
# Workers of one dynsweep study on machines reached by ssh, each in a tmux session that outlives
# the connection. The study lives in PostgreSQL (every machine reaches it); the first host creates it.
#
#   sweeps/slurm/workers_ssh.sh sweeps/resnet18.yaml postgresql://me@dbhost/sweeps gpu1 gpu2 gpu3
#
# Each host runs one worker per GPU (--devices all of its GPUs, one trial each). A host that dies
# leaves trials without heartbeats: after storage.grace_period seconds another worker fails them
# and re-queues them with the same params and seeds. Watch with:
#   dynsweep sweep status --storage URL --study NAME
set -euo pipefail
SPEC=$1; STORAGE=$2; shift 2
STUDY=$(python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$SPEC")
FIRST=1
for HOST in "$@"; do
  if [ $FIRST = 1 ]; then
    COMMAND="dynsweep sweep run $SPEC --storage $STORAGE --devices all --no-table"
    FIRST=0
  else
    COMMAND="sleep 60; dynsweep sweep worker --storage $STORAGE --study $STUDY --devices all"
  fi
  # The checkout and its virtual environment are at the same path on every host.
  ssh "$HOST" "cd $PWD && tmux new-session -d -s dynsweep-$STUDY '. .venv/bin/activate && $COMMAND'"
done
