#!/usr/bin/env bash
# CI for the Python ERP client: venv, stubs, unit tests (golden vectors of
# docs/ledger-format.md), then end to end against a fresh 4-validator
# testnet on free ports.
#
#   examples/erp-python/ci.sh [PATH/TO/symbiont-node]
#
# The node binary defaults to $SYMBIONT_NODE, else target/debug/symbiont-node
# of this repository (build it with `cargo build -p symbiont-node`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
node_bin=${1:-${SYMBIONT_NODE:-$repo/target/debug/symbiont-node}}
node_bin=$(realpath "$node_bin")
[ -x "$node_bin" ] || { echo "ci.sh: no node binary at $node_bin" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${ok:-0}" != 1 ]; then
    for f in "$work"/validator-*.err; do
      [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 20 "$f"; }
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cd "$here"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check -r requirements.txt
PYTHON="$py" ./generate.sh

echo "== unit tests (golden vectors)"
"$py" -m unittest -v test_encoding

# A base port whose p2p (N..N+3), gRPC (+100) and metrics (+1000) ports are
# all free.
base=$("$py" - <<'PY'
import random, socket
for _ in range(200):
    b = random.randrange(20000, 40000)
    ports = [b + i + d for i in range(4) for d in (0, 100, 1000)]
    try:
        socks = []
        for p in ports:
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(b); break
else:
    raise SystemExit("no free ports")
PY
)
grpc="127.0.0.1:$((base + 100))"
echo "== testnet in $work/park, p2p ports from $base, gRPC $grpc"
"$node_bin" testnet --validators 4 --dir "$work/park" --base-port "$base" >/dev/null
for i in 0 1 2 3; do
  "$node_bin" run --config "$work/park/validator-$i/config.toml" \
    >"$work/validator-$i.out" 2>"$work/validator-$i.err" &
  pids+=($!)
done

client() { "$py" erp_client.py --grpc "$grpc" "$@"; }

# Wait for the first block.
for _ in $(seq 1 120); do
  if client --timeout 5 status 2>/dev/null | grep -qv ' height 0 '; then break; fi
  sleep 0.5
done
client status

echo "== the firm admin authorizes a meter key; its event must be seen"
client --timeout 90 authorize-key --key "$work/park/firms/firm-0.pem" --firm firm-0 \
  --new-key "$work/meter.pem" --events --limit 50 --expect-applied

echo "== the meter records a delivery (no contract on this testnet: it must"
echo "   decode and commit, failing with unknown_contract)"
client --timeout 90 record-delivery --key "$work/meter.pem" \
  --contract "$(printf '07%.0s' $(seq 32))" --period 0 --quantity 12500 \
  --expect-error unknown_contract

echo "== the meter's second transaction takes nonce 2 from Query/GetSigner"
client --timeout 90 record-delivery --key "$work/meter.pem" \
  --contract "$(printf '07%.0s' $(seq 32))" --period 1 --quantity 1 \
  --expect-error unknown_contract | tee "$work/second.out"
grep -q "(nonce 2)" "$work/second.out" || { echo "ci.sh: the second transaction did not get nonce 2" >&2; exit 1; }

echo "== events of firm-0 from height 1"
client --timeout 30 events --from-height 1 --limit 2 --firm firm-0

ok=1
echo "erp-python ci: OK"
