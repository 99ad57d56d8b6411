#!/usr/bin/env bash
# Generates the Python gRPC stubs from ../../proto into generated/ (gitignored).
# Run it with the venv's python on PATH (or set PYTHON).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
rm -rf generated
mkdir -p generated
"$PYTHON" -m grpc_tools.protoc -I ../../proto \
  --python_out=generated --grpc_python_out=generated \
  ../../proto/symbiont/v1/common.proto \
  ../../proto/symbiont/v1/node.proto \
  ../../proto/symbiont/v1/stream.proto \
  ../../proto/symbiont/v1/query.proto
echo "stubs written to $(pwd)/generated"
