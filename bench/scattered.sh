#!/usr/bin/env bash
# Scattered writes: what anyrecv's journal costs when one file changes in many small places
# (a VM image or a database). A 64 MiB file is received whole, then an incremental stream of
# one-byte `write` records spread evenly over it (32k, 131k and 524k records) is received
# into it, with the journal and without (ANYRECV_NO_JOURNAL=1), in turns, on a fresh ext4.
# The stream is made by crates/stream/examples/scattered_writes.rs: anysend itself merges
# nearby changes into larger records. Cold: the page cache dropped before the timed receive
# (each one-byte write into an uncached page first reads it); warm: the file read into the
# cache first.
#
#   bash bench/scattered.sh [--runs N] [--out DIR] [--keep-work]
#
# The stream is always read back into the cache after the page cache is dropped; one warm-up run, then
# the median of --runs (default 5) timed runs per variant. Every received file is compared
# with the expected bytes (computed independently). Targets (measured, never asserted):
# journaled ≤ 1.2× unjournaled at 524k records, peak RSS ≤ 64 MiB, cost linear in records.
# Writes bench/results/scattered-latest.md and raw-scattered/ (or into --out). Needs root.
set -uo pipefail
source "$(dirname "$0")/lib/common.sh"

RUNS=5
OUT="$BENCH_DIR/results"
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=$2; shift ;;
    --runs=*) RUNS=${1#*=} ;;
    --out) OUT=$2; shift ;;
    --out=*) OUT=${1#*=} ;;
    --keep-work) KEEP_WORK=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
  shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"

need_root_linux
START=$EPOCHREALTIME
setup_work scattered
TIMINGS="$WORK/timings.tsv"
: >"$TIMINGS"
FAILURES=0
COMMIT=$(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO_DIR" && git diff --quiet HEAD -- crates 2>/dev/null || echo "+dirty")
build_binaries || die "cargo build --release --bins failed"
(cd "$REPO_DIR" && cargo build --release -q -p anysend-stream --example scattered_writes) \
  || die "building the scattered_writes example"
TDIR=$(cd "$REPO_DIR" && cargo metadata --format-version 1 --no-deps \
       | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cp "$TDIR/release/examples/scattered_writes" "$WORK/bin/" 2>/dev/null \
  || { mkdir -p "$WORK/bin" && cp "$TDIR/release/examples/scattered_writes" "$WORK/bin/"; } \
  || die "copying scattered_writes"
GEN="$WORK/bin/scattered_writes"

SIZE=$((64 << 20))
COUNTS=(32768 131072 524288)
make_fs ext4 dst 4G
DST=$WORK/mnt/dst
mkdir -p "$WORK/src" "$WORK/streams" "$WORK/expected"
head -c "$SIZE" /dev/urandom >"$WORK/src/f" || die "making the file"
"$ANYSEND" -q --label v1 -f "$WORK/streams/full" "$WORK/src" || die "anysend of the file"
for n in "${COUNTS[@]}"; do
  stride=$((SIZE / n))
  "$GEN" "$WORK/streams/full" f "$n" "$stride" "$WORK/streams/inc-$n" || die "scattered_writes $n"
  # The expected bytes, from the file and the rule the example writes by.
  python3 - "$WORK/src/f" "$n" "$stride" "$WORK/expected/f-$n" <<'EOF' || die "expected bytes"
import sys
data = bytearray(open(sys.argv[1], "rb").read())
n, stride = int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    data[i * stride] = i % 251
open(sys.argv[4], "wb").write(data)
EOF
done

# receive CACHE N VARIANT RUN: a fresh ext4 with the full stream received (untimed), then the
# incremental timed until durable (anyrecv syncs DEST itself), then checked.
receive() {
  local cache=$1 n=$2 variant=$3 r=$4
  local -a env=()
  [ "$variant" = unjournaled ] && env=(ANYRECV_NO_JOURNAL=1)
  remake_fs ext4 dst
  rm -rf "$WORK/state" && mkdir -p "$WORK/state"
  "$ANYRECV" -q --state-dir "$WORK/state" -f "$WORK/streams/full" "$DST/d" || die "full receive"
  settle_cache "$WORK/streams/inc-$n"
  [ "$cache" = warm ] && cat "$DST/d/f" >/dev/null
  timed "$cache-$n" receive "$variant" "$r" - -- env "${env[@]}" "$ANYRECV" -q --state-dir "$WORK/state" \
    -f "$WORK/streams/inc-$n" "$DST/d" || return 1
  cmp -s "$DST/d/f" "$WORK/expected/f-$n" || {
    log "WRONG: $variant $n ($cache) run $r: the received file differs from the expected bytes"
    FAILURES=$((FAILURES + 1))
    return 1
  }
}

for cache in cold warm; do
  for n in "${COUNTS[@]}"; do
    log "$n scattered writes, $cache: journaled and unjournaled in turns ($RUNS runs and a warm-up)"
    for ((r = 0; r <= RUNS; r++)); do
      if [ $((r % 2)) = 0 ]; then order=(journaled unjournaled); else order=(unjournaled journaled); fi
      for v in "${order[@]}"; do receive "$cache" "$n" "$v" "$r" || break 2; done
    done
  done
done

DATE=$(date +%Y-%m-%d)
mkdir -p "$OUT/raw-scattered"
cp "$TIMINGS" "$OUT/raw-scattered/timings.tsv"
MACHINE=$(machine_json "$ANYSEND" "$WORK")
M_MACHINE=$MACHINE M_COMMIT=$COMMIT M_DATE=$DATE M_RUNS=$RUNS \
M_ELAPSED=$(python3 -c "print(round($EPOCHREALTIME - $START))") \
python3 - "$TIMINGS" "$OUT/scattered-latest.md" <<'EOF' || die "report failed"
import json, os, statistics, sys
e = os.environ
rows = {}
for line in open(sys.argv[1]):
    case, op, tool, run, t0, t1, rss, _bytes, rc, _err, cpu = line.rstrip("\n").split("\t")
    if run == "0" or rc != "0":
        continue
    cache, n = case.split("-")
    rows.setdefault(((cache, int(n)), tool), []).append(
        (int(run), float(t1) - float(t0), int(rss), float(cpu)))
m = json.loads(e["M_MACHINE"])
out = [f"# anyrecv benchmark: scattered writes into one file, {e['M_DATE']}", "",
       f"- machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; commit {e['M_COMMIT']}",
       "- a 64 MiB file received whole, then N one-byte `write` records spread evenly over it, "
       "received into it on a fresh ext4 (loop file, direct I/O), timed until durable; "
       f"journaled and unjournaled (`ANYRECV_NO_JOURNAL=1`) in turns; median of {e['M_RUNS']} "
       "runs after a warm-up; every received file compared with the expected bytes",
       f"- total time: {e['M_ELAPSED']} s", "",
       "| cache | records | journaled wall | unjournaled wall | ratio (median of run pairs) | "
       "journaled CPU | unjournaled CPU | journaled µs/record | journaled peak RSS | "
       "unjournaled peak RSS |",
       "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
ratios = {}
for key in sorted({k[0] for k in rows}):
    cache, n = key
    j, u = rows.get((key, "journaled"), []), rows.get((key, "unjournaled"), [])
    if not j or not u:
        continue
    by_run = {r: w for r, w, _, _ in u}
    pair = [w / by_run[r] for r, w, _, _ in j if r in by_run and by_run[r] > 0]
    ratios[key] = statistics.median(pair) if pair else None
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    out.append(f"| {cache} | {n:,} | {med(j, 1):.2f} s | {med(u, 1):.2f} s | {ratios[key]:.2f}× | "
               f"{med(j, 3):.2f} s | {med(u, 3):.2f} s | {med(j, 1) / n * 1e6:.1f} | "
               f"{max(x[2] for x in j) / 1024:.1f} MiB | {max(x[2] for x in u) / 1024:.1f} MiB |")
out += ["", "## Targets (measured, never asserted)", "", "| target | measured | status |",
        "|---|---:|---|"]
for cache in ("cold", "warm"):
    ns = [k[1] for k in ratios if k[0] == cache and ratios[k] is not None]
    if not ns:
        continue
    big = (cache, max(ns))
    r = ratios[big]
    rss = max(x[2] for x in rows[(big, "journaled")]) / 1024
    out.append(f"| journaled ≤ 1.2× unjournaled at {big[1]:,} records, {cache} | {r:.2f}× | "
               f"{'met' if r <= 1.2 else 'NOT met'} |")
    out.append(f"| journaled peak RSS ≤ 64 MiB at {big[1]:,} records, {cache} | {rss:.1f} MiB | "
               f"{'met' if rss <= 64 else 'NOT met'} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
log "results: $OUT/scattered-latest.md"
[ "$FAILURES" = 0 ] || exit 1
