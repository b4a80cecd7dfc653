#!/usr/bin/env bash
# Runs the stream-reader fuzz target for SECONDS (default 60), seeded with the golden streams.
# Needs the nightly toolchain and cargo-fuzz (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
mkdir -p corpus/reader
cp ../fixtures/streams/*.stream corpus/reader/
# 48 MiB covers one maximal record (16 MiB payload + 8 MiB data) with room to spare.
cargo +nightly fuzz run reader corpus/reader -- \
  -max_total_time="$seconds" -rss_limit_mb=512 -malloc_limit_mb=48 -print_final_stats=1
