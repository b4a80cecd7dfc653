#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60): `reader` (the stream reader, seeded with the
# golden streams) and `receiver` (the whole receiver on crafted record sequences, into a
# scratch DEST under /dev/shm or /tmp). Needs the nightly toolchain and cargo-fuzz (installed
# here if missing).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
mkdir -p corpus/reader corpus/receiver
cp ../fixtures/streams/*.stream corpus/reader/
# 48 MiB covers one maximal record (16 MiB payload + 8 MiB data) with room to spare.
cargo +nightly fuzz run reader corpus/reader -- \
  -max_total_time="$seconds" -rss_limit_mb=512 -malloc_limit_mb=48 -print_final_stats=1
# Four bytes a record: up to 64 records a run. Each run makes and removes a scratch tree.
cargo +nightly fuzz run receiver corpus/receiver -- \
  -max_total_time="$seconds" -max_len=256 -rss_limit_mb=1024 -print_final_stats=1
