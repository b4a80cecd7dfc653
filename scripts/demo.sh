#!/usr/bin/env bash
# The main job on an embedded example. Until anysend walks trees (issue: anysend and anyrecv end
# to end), it writes a sample full and incremental stream with the stream crate and verifies both
# with `anyrecv --dump`; it fails if either does not verify.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p anyrecv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo run --release -q -p anysend-stream --example sample_streams -- "$work"
for s in full incremental; do
  echo "== $s stream =="
  ./target/release/anyrecv --dump -f "$work/$s.stream"
done
echo "demo: both streams verified"
