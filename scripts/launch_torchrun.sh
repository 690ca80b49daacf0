#!/usr/bin/env bash
# Multi-node (or single-node) training with torchrun: run this same command on every node.
#
#   # node 0 (also the rendezvous host)            # node 1
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 \       NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 \
#     scripts/launch_torchrun.sh -e zero3_5b         scripts/launch_torchrun.sh -e zero3_5b
#
# Environment (defaults in brackets):
#   NNODES [1]           nodes in the job            NODE_RANK [0]      this node's index, 0..NNODES-1
#   GPUS_PER_NODE [all visible GPUs, else 1]         processes started on this node (one per GPU)
#   MASTER_ADDR [127.0.0.1] host of node 0           MASTER_PORT [29500] a free TCP port on it
#   ENTRY [main.py]      the script torchrun starts (tests use tests/support/fit_with_cpu_deepspeed.py)
# Arguments are passed to `main.py fit` (experiment, key=value overrides). `--resume auto` is added, so a
# restarted job continues from the newest complete step checkpoint of the run (also with a different
# NNODES x GPUS_PER_NODE for deepspeed_zero3: see README "Scale-out and resume").
# Lightning reads RANK / LOCAL_RANK / WORLD_SIZE from torchrun's environment; devices and num_nodes
# below must match what torchrun starts, and they are appended last so they win over the experiment.
set -euo pipefail
cd "$(dirname "$0")/.."

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
ENTRY=${ENTRY:-main.py}
if [[ -z "${GPUS_PER_NODE:-}" ]]; then
  GPUS_PER_NODE=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [[ "$GPUS_PER_NODE" -gt 0 ]] || GPUS_PER_NODE=1
fi
PYTHON=${PYTHON:-python}
[[ -x .venv/bin/python && "$PYTHON" == python ]] && PYTHON=.venv/bin/python

echo "torchrun: node $NODE_RANK/$NNODES, $GPUS_PER_NODE processes, rendezvous $MASTER_ADDR:$MASTER_PORT" >&2
exec "$PYTHON" -m torch.distributed.run \
  --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS_PER_NODE" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  "$ENTRY" fit --resume auto "$@" \
  train.strategy.devices="$GPUS_PER_NODE" train.strategy.num_nodes="$NNODES"
