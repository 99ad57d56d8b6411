#!/usr/bin/env bash
# A local Symbiont testnet: N validators, each its own `symbiont-node`
# process on 127.0.0.1, until Ctrl-C (which stops them all).
#
#   deploy/testnet.sh N [DIR]
#
# DIR (default: a new directory under /tmp) must be empty or absent; it
# gets genesis.toml, firms/<firm>.pem (each firm's admin key) and one
# directory per node with config.toml, node.pem, data/ and node.log.
# Environment: SYMBIONT_NODE (the binary; default target/debug/symbiont-node,
# built with cargo when missing), BASE_PORT (first p2p port, default 26656;
# node i uses BASE_PORT+i for p2p, +100 for gRPC, +1000 for metrics).
set -euo pipefail

usage() {
  echo "usage: $0 N [DIR]   (N validators, 1 or more)" >&2
  exit 2
}
[[ $# -ge 1 && $# -le 2 && $1 =~ ^[1-9][0-9]*$ ]] || usage
count=$1
dir=${2:-$(mktemp -d /tmp/symbiont-testnet.XXXXXX)}
base_port=${BASE_PORT:-26656}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
node=${SYMBIONT_NODE:-$root/target/debug/symbiont-node}

if [[ ! -x $node ]]; then
  echo "building symbiont-node (cargo build -p symbiont-node)..." >&2
  cargo build --manifest-path "$root/Cargo.toml" -p symbiont-node
fi

"$node" testnet --validators "$count" --base-port "$base_port" --dir "$dir" >/dev/null

# Nodes die with this script even if it is killed with SIGKILL.
launcher=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
  launcher=(setpriv --pdeathsig TERM --)
fi
pids=()
# shellcheck disable=SC2317  # called by the traps
stop() {
  trap - INT TERM EXIT
  if [[ ${#pids[@]} -gt 0 ]]; then
    echo "stopping ${#pids[@]} nodes..." >&2
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

for ((i = 0; i < count; i++)); do
  name=validator-$i
  # stdout: "height N" per block; stderr: the log. Both to node.log.
  "${launcher[@]}" "$node" run --config "$dir/$name/config.toml" >"$dir/$name/node.log" 2>&1 &
  pids+=("$!")
  p2p=$((base_port + i))
  printf '%s  pid %s  p2p 127.0.0.1:%s  grpc http://127.0.0.1:%s  metrics http://127.0.0.1:%s/metrics  log %s\n' \
    "$name" "$!" "$p2p" "$((p2p + 100))" "$((p2p + 1000))" "$dir/$name/node.log"
done
cat <<EOF

network in $dir (admin keys: $dir/firms/firm-<i>.pem)
try:  symbiont --node http://127.0.0.1:$((base_port + 100)) status
      curl -s http://127.0.0.1:$((base_port + 1000))/metrics | grep '^symbiont_height'
Ctrl-C stops all nodes.
EOF

# Until Ctrl-C, or until a node exits (then stop the rest and say which).
set +e
wait -n "${pids[@]}"
status=$?
set -e
for ((i = 0; i < count; i++)); do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "validator-$i exited (status $status); see $dir/validator-$i/node.log" >&2
  fi
done
exit "$status"
