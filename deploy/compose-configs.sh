#!/usr/bin/env bash
# Configs for deploy/compose.yaml: a 4-validator park, one firm and one
# container per site, on the compose network 172.28.0.0/24.
#
#   deploy/compose-configs.sh [DIR]     (default: deploy/park)
#
# Runs `symbiont-node testnet --validators 4` into DIR (which must be empty
# or absent), then rewrites each DIR/validator-<i>/config.toml for its
# container: listen on 0.0.0.0:26656, gRPC on 0.0.0.0:9090, metrics on
# 0.0.0.0:26660, genesis beside the config, data in /var/lib/symbiont, and
# peers at their fixed container addresses 172.28.0.11-14 (the node dials
# /ip4 and /ip6 addresses only, not host names, so compose.yaml gives each
# service a fixed address). Admin keys of the four firms: DIR/firms/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$root/deploy/park}
node=${SYMBIONT_NODE:-$root/target/debug/symbiont-node}
if [[ ! -x $node ]]; then
  cargo build --manifest-path "$root/Cargo.toml" -p symbiont-node
fi
# testnet's node i listens on 127.0.0.1:(base + i); in compose it is
# 172.28.0.(11 + i):26656.
base=26656
"$node" testnet --validators 4 --base-port "$base" --dir "$dir" >/dev/null

for i in 0 1 2 3; do
  node_dir=$dir/validator-$i
  cp "$dir/genesis.toml" "$node_dir/genesis.toml"
  rewrite=(
    -e 's|^genesis_file = .*|genesis_file = "genesis.toml"|'
    -e 's|^data_dir = .*|data_dir = "/var/lib/symbiont"|'
    -e 's|^listen = .*|listen = "/ip4/0.0.0.0/tcp/26656"|'
    -e 's|^grpc_address = .*|grpc_address = "0.0.0.0:9090"|'
    -e 's|^metrics_address = .*|metrics_address = "0.0.0.0:26660"|'
  )
  for j in 0 1 2 3; do
    rewrite+=(-e "s|\"/ip4/127.0.0.1/tcp/$((base + j))\"|\"/ip4/172.28.0.$((11 + j))/tcp/26656\"|")
  done
  sed -i "${rewrite[@]}" "$node_dir/config.toml"
  if grep -q '127\.0\.0\.1' "$node_dir/config.toml"; then
    echo "error: $node_dir/config.toml still names 127.0.0.1" >&2
    exit 1
  fi
done

# The image runs as uid 10001, which must own the key files (mode 0600).
if [[ $(id -u) -eq 0 ]]; then
  chown -R 10001:10001 "$dir"/validator-*
  owner="done"
else
  owner="run: sudo chown -R 10001:10001 $dir/validator-*"
fi
cat <<EOF2
configs in $dir (firm admin keys: $dir/firms/firm-<i>.pem)
key ownership for the containers' user 10001: $owner
then, from deploy/: SYMBIONT_PARK=$dir docker compose up -d --build
EOF2
