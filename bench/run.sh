#!/usr/bin/env bash
# The anysend benchmark: full, incremental ("a day of changes") and quiet-day send and receive,
# side by side with btrfs send/receive, rsync and tar, on a btrfs snapshot series of real files.
# See bench/README.md. Needs root and Linux (loop devices, btrfs).
#
#   bash bench/run.sh [--quick] [--runs N] [--journal-runs N] [--out DIR] [--verify-all]
#                     [--keep-work] [--only-anysend] [--anyrecv-vs BIN]
#
# --journal-runs N (default 9; --runs in --quick): timed runs of anyrecv with and without its
# journal, taken in turns. Their ratio is a 10% target and one run of either varies by more than
# that with the host's write-back, so it gets more runs than the others.
#
# --only-anysend: measure anysend and anyrecv alone (no peers), into DATE-MODE-anysend-only.*,
# leaving latest.* alone: for a change to anysend or anyrecv measured again after a full run.
#
# --anyrecv-vs BIN: instead of anyrecv without its journal, take another build of anyrecv (say
# the one before a change) in turns with this one, on the same streams: the report's "other
# build" rows and ratios (run by run) then tell what the change costs, however loaded the host.
#
# --quick: a few thousand files and a few MiB: a smoke test of this script that asserts every
# tool's received tree equals its snapshot and exits non-zero otherwise. Timings are recorded,
# never asserted.
set -uo pipefail
source "$(dirname "$0")/lib/common.sh"

MODE=full
RUNS=3
JOURNAL_RUNS=""
OUT="$BENCH_DIR/results"
VERIFY_ALL=0
ONLY_ANYSEND=0
ANYRECV_VS=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) MODE=quick ;;
    --runs) RUNS=$2; shift ;;
    --runs=*) RUNS=${1#*=} ;;
    --journal-runs) JOURNAL_RUNS=$2; shift ;;
    --journal-runs=*) JOURNAL_RUNS=${1#*=} ;;
    --out) OUT=$2; shift ;;
    --out=*) OUT=${1#*=} ;;
    --verify-all) VERIFY_ALL=1 ;;
    --keep-work) KEEP_WORK=1 ;;
    --only-anysend) ONLY_ANYSEND=1 ;;
    --anyrecv-vs) ANYRECV_VS=$2; shift ;;
    --anyrecv-vs=*) ANYRECV_VS=${1#*=} ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
  shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"
[ "$MODE" = quick ] && VERIFY_ALL=1
if [ -z "$JOURNAL_RUNS" ]; then
  JOURNAL_RUNS=9
  [ "$MODE" = quick ] && JOURNAL_RUNS=$RUNS
fi
[[ $JOURNAL_RUNS =~ ^[1-9][0-9]*$ ]] || die "--journal-runs needs a positive number"

# An interrupted run keeps its raw timings (the report is not written).
REPORT_DONE=0
on_exit() {
  if [ "$REPORT_DONE" = 0 ] && [ -n "${TIMINGS:-}" ] && [ -s "${TIMINGS:-}" ]; then
    mkdir -p "$OUT/raw-$MODE-interrupted"
    cp "$TIMINGS" "${VERIFY:-}" "$OUT/raw-$MODE-interrupted/" 2>/dev/null
    log "interrupted (exit $1): raw timings so far in $OUT/raw-$MODE-interrupted/"
  fi
}

need_root_linux
START=$EPOCHREALTIME
setup_work "run-$MODE"
TIMINGS="$WORK/timings.tsv"
VERIFY="$WORK/verify.tsv"
: >"$TIMINGS"
: >"$VERIFY"

# the commit the binaries are built from (+dirty: with uncommitted changes under crates/)
COMMIT=$(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO_DIR" && git diff --quiet HEAD -- crates 2>/dev/null || echo "+dirty")
COMMIT="$COMMIT, built $(date -u +%H:%M) UTC"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ANYSEND_OK=1
if ! build_binaries; then
  ANYSEND_OK=0
  FAILURES=$((FAILURES + 1))
  printf 'build\tanysend/anyrecv\tFAIL\tcargo build --release --bins failed\n' >>"$VERIFY"
fi

# ---- sizes ---------------------------------------------------------------------------------
if [ "$MODE" = quick ]; then
  SRC_SIZE=2G DST_SIZE=1G
  SELECT=(--max-entries 3000 --max-file-size 16384 --max-bytes $((6 << 20))
          /usr/share/doc /usr/include /usr/share /usr/lib)
  BIG_SIZE=$((2 << 20)) SPARSE_SIZE=$((64 << 20)) SPARSE_CHUNK=$((16 << 10))
else
  SRC_SIZE=48G DST_SIZE=24G
  # /usr, the cargo registry and the toolchains' documentation: ~170,000 files, ~4.4 GiB here
  SELECT=(--max-files 170000 --exclude /usr/lib/jvm --exclude /usr/lib/google-cloud-sdk
          --exclude /root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib
          --exclude /root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib
          /usr /root/.cargo/registry /root/.rustup/toolchains)
  BIG_SIZE=$((1 << 30)) SPARSE_SIZE=$((2 << 30)) SPARSE_CHUNK=$((1 << 20))
fi

make_fs btrfs src "$SRC_SIZE"
make_fs btrfs rcv "$DST_SIZE"
make_fs ext4 ext "$DST_SIZE"
SRC=$WORK/mnt/src RCV=$WORK/mnt/rcv EXT=$WORK/mnt/ext
STREAMS=$WORK/streams
mkdir -p "$STREAMS"

# ---- the data set: s1, a day of changes -> s2, a quiet day -> s3 ---------------------------
DS="python3 $LIB_DIR/dataset.py"
log "data set: selecting files"
btrfs -q subvolume create "$SRC/live" >/dev/null || die "btrfs subvolume create"
SELECTION=$($DS select --out "$WORK/list" "${SELECT[@]}") || die "selecting files"
log "data set: copying $SELECTION"
TARX=(--xattrs "--xattrs-include=*" --acls --numeric-owner)
tar -C / --null --no-recursion -T "$WORK/list" "${TARX[@]}" -cf - 2>"$WORK/copy.err" \
  | tar -C "$SRC/live" "${TARX[@]}" -xpf - 2>>"$WORK/copy.err" \
  || { tail -n 5 "$WORK/copy.err" >&2; die "copying the data set"; }
log "data set: big files and a sparse file"
for i in 1 2 3; do
  $DS bigfile "$SRC/live/bench-big/big$i.bin" --size "$BIG_SIZE" --seed "$((10 + i))" \
    --pool "$SRC/live" || die "bigfile"
done
$DS sparse "$SRC/live/bench-big/sparse.bin" --size "$SPARSE_SIZE" --chunks 4 \
  --chunk-size "$SPARSE_CHUNK" || die "sparse file"
$DS extras "$SRC/live" || die "extras"
sync
btrfs -q subvolume snapshot -r "$SRC/live" "$SRC/s1" >/dev/null || die "snapshot s1"
log "data set: a day of changes"
sleep 1.1  # rsync's quick check compares mtimes to the second: keep the steps a second apart
DAY=$($DS day "$SRC/live" --scale "$MODE") || die "day of changes"
sync
btrfs -q subvolume snapshot -r "$SRC/live" "$SRC/s2" >/dev/null || die "snapshot s2"
sleep 1.1
QUIET=$($DS quiet "$SRC/live" --count 10) || die "quiet day"
sync
btrfs -q subvolume snapshot -r "$SRC/live" "$SRC/s3" >/dev/null || die "snapshot s3"
S1STATS=$($DS stats "$SRC/s1") S2STATS=$($DS stats "$SRC/s2") S3STATS=$($DS stats "$SRC/s3")
log "data set: s1 $S1STATS"
if [ "$MODE" = full ]; then
  python3 - "$S1STATS" <<'EOF' || log "WARNING: the data set is smaller than the brief (150,000 files, 3 GiB)"
import json, sys
s = json.loads(sys.argv[1])
sys.exit(0 if s["files"] >= 150000 and s["bytes"] - 3 * 2**30 - 2 * 2**30 >= 3 * 2**30 else 1)
EOF
fi

# ---- measurement helpers -------------------------------------------------------------------
# series CASE OP TOOL OUTFILE -- CMD...: one warm-up run and $RUNS timed runs; stops at a failure.
series() {
  local case=$1 op=$2 tool=$3 outf=$4 r
  shift 5
  for ((r = 0; r <= RUNS; r++)); do
    [ "$outf" != - ] && rm -f "$outf"
    timed "$case" "$op" "$tool" "$r" "$outf" -- "$@" || return 1
  done
}

want_verify() { [ "$VERIFY_ALL" = 1 ] || [ "$1" = 0 ]; }

# Every receive (and rsync copy) is timed until its data is durable: `DURABLE MOUNT CMD...` runs
# CMD, then syncfs on MOUNT. anyrecv syncs the destination itself; tar, btrfs receive and rsync
# do not, so without this they would leave their write-back out of their time.
DURABLE=(bash -c '"${@:2}" && sync -f "$1"' _)

# One receive cycle, run $1 of a variant ($2 label, $3 kind): a fresh destination, then the full,
# incremental and quiet-day streams $4..$6 in turn (each one's base is what the previous step
# received).
recv_cycle() {
  local r=$1 label=$2 kind=$3 full=$4 inc=$5 quiet=$6 dest mnt
  local -a cmd
  settle_cache "$full" "$inc" "$quiet"
  case $kind in
    anyrecv|anyrecv-nj|anyrecv-vs)
      remake_fs ext4 ext
      dest=$EXT/dest mnt=$EXT
      mkdir "$dest"
      rm -rf "$WORK/anyrecv-state"
      mkdir -p "$WORK/anyrecv-state"
      cmd=("$ANYRECV" --state-dir "$WORK/anyrecv-state" -f)
      # What the journal costs: the same receive with it switched off (a hidden switch).
      [ "$kind" = anyrecv-nj ] && cmd=(env ANYRECV_NO_JOURNAL=1 "${cmd[@]}")
      [ "$kind" = anyrecv-vs ] && cmd=("$ANYRECV_VS" --state-dir "$WORK/anyrecv-state" -f) ;;
    btrfs)
      remake_fs btrfs rcv
      dest=$RCV mnt=$RCV
      cmd=(btrfs receive -q -f) ;;
  esac
  local step stream snap d
  for step in full incremental quiet; do
    case $step in
      full) stream=$full snap=s1 ;;
      incremental) stream=$inc snap=s2 ;;
      quiet) stream=$quiet snap=s3 ;;
    esac
    [ -e "$stream" ] || return 1
    timed "$step" receive "$label" "$r" "$stream" -- "${DURABLE[@]}" "$mnt" \
      "${cmd[@]}" "$stream" "$dest" || return 1
    d=$dest
    [ "$kind" = btrfs ] && d=$RCV/$snap
    if want_verify "$r"; then verify "$step" "$label" "$SRC/$snap" "$d" || return 1; fi
  done
}

# recv_cycles LABEL KIND FULL INC QUIET [LABEL KIND]...: a receive cycle per run and variant
# ($CYCLE_RUNS timed runs, else $RUNS). Several variants take turns within each run, in
# alternating order, so that load drifting during the series weighs on them alike (their ratio
# is a target); one that fails stops, the others go on.
recv_cycles() {
  local full=$3 inc=$4 quiet=$5 r i j n runs=${CYCLE_RUNS:-$RUNS}
  local -a vs=("$1" "$2" "${@:6}") failed=()
  n=$((${#vs[@]} / 2))
  for ((r = 0; r <= runs; r++)); do
    for ((i = 0; i < n; i++)); do
      j=$i
      [ $((r % 2)) = 1 ] && j=$((n - 1 - i))
      [ -n "${failed[j]:-}" ] && continue
      recv_cycle "$r" "${vs[2 * j]}" "${vs[2 * j + 1]}" "$full" "$inc" "$quiet" || failed[j]=1
    done
  done
  [ ${#failed[@]} = 0 ]
}

# ---- anysend and anyrecv -------------------------------------------------------------------
if [ "$ANYSEND_OK" = 1 ]; then
  for v in plain z; do
    if [ $v = z ]; then flags=(-z) lbl="anysend -z" rlbl="anyrecv (-z stream)"
    else flags=() lbl="anysend" rlbl="anyrecv"; fi
    log "measuring $lbl"
    f=$STREAMS/any-$v-full i=$STREAMS/any-$v-inc q=$STREAMS/any-$v-quiet
    series full send "$lbl" "$f" -- "$ANYSEND" -q "${flags[@]}" -f "$f" "$SRC/s1"
    series incremental send "$lbl" "$i" -- "$ANYSEND" -q "${flags[@]}" --from "$SRC/s1" -f "$i" "$SRC/s2"
    series quiet send "$lbl" "$q" -- "$ANYSEND" -q "${flags[@]}" --from "$SRC/s2" -f "$q" "$SRC/s3"
    if [ $v = plain ] && [ -n "$ANYRECV_VS" ]; then
      log "measuring $rlbl, and anyrecv of the other build $ANYRECV_VS, in turns ($JOURNAL_RUNS runs)"
      CYCLE_RUNS=$JOURNAL_RUNS recv_cycles "$rlbl" anyrecv "$f" "$i" "$q" \
        "anyrecv (other build)" anyrecv-vs
    elif [ $v = plain ]; then
      log "measuring $rlbl, and anyrecv without its journal, in turns ($JOURNAL_RUNS runs)"
      CYCLE_RUNS=$JOURNAL_RUNS recv_cycles "$rlbl" anyrecv "$f" "$i" "$q" \
        "anyrecv (no journal)" anyrecv-nj
    else
      log "measuring $rlbl"
      recv_cycles "$rlbl" anyrecv "$f" "$i" "$q"
    fi
    if [ $v = plain ]; then
      # What `anyrecv --check` costs on a whole received tree, beside the nearest thing a user
      # would run instead: rsync's dry run between the snapshot and the replica (both stat every
      # name; neither reads file data). Warm cache, like the scans.
      log "measuring anyrecv --check and rsync -a -n --delete on the received full tree"
      remake_fs ext4 ext
      mkdir "$EXT/dest"
      rm -rf "$WORK/anyrecv-state" && mkdir -p "$WORK/anyrecv-state"
      "$ANYRECV" -q --state-dir "$WORK/anyrecv-state" -f "$f" "$EXT/dest" || die "receiving s1 for --check"
      series full check "anyrecv --check" - -- \
        "$ANYRECV" --state-dir "$WORK/anyrecv-state" --check "$EXT/dest"
      series full check "rsync -a -n --delete" - -- rsync -a -n --delete "$SRC/s1/" "$EXT/dest/"
    fi
    rm -f "$f" "$i" "$q"
  done
  log "measuring anysend -n"
  series incremental scan "anysend -n" - -- "$ANYSEND" -n -q --from "$SRC/s1" "$SRC/s2"
  series quiet scan "anysend -n" - -- "$ANYSEND" -n -q --from "$SRC/s2" "$SRC/s3"
fi

if [ "$ONLY_ANYSEND" = 0 ]; then
# ---- btrfs send / receive ------------------------------------------------------------------
log "measuring btrfs send / receive"
f=$STREAMS/btrfs-full i=$STREAMS/btrfs-inc q=$STREAMS/btrfs-quiet
series full send "btrfs send" "$f" -- btrfs send -q -f "$f" "$SRC/s1"
series incremental send "btrfs send" "$i" -- btrfs send -q -p "$SRC/s1" -f "$i" "$SRC/s2"
series quiet send "btrfs send" "$q" -- btrfs send -q -p "$SRC/s2" -f "$q" "$SRC/s3"
recv_cycles "btrfs receive" btrfs "$f" "$i" "$q"
rm -f "$f" "$i" "$q"
log "measuring btrfs send | zstd -3"
BZ='btrfs send -q "$@" | zstd -3 -q -c >"$OUTF"'
series full send "btrfs send | zstd -3" "$f" -- env OUTF="$f" bash -c "$BZ" _ "$SRC/s1"
series incremental send "btrfs send | zstd -3" "$i" -- env OUTF="$i" bash -c "$BZ" _ -p "$SRC/s1" "$SRC/s2"
series quiet send "btrfs send | zstd -3" "$q" -- env OUTF="$q" bash -c "$BZ" _ -p "$SRC/s2" "$SRC/s3"
rm -f "$f" "$i" "$q"

# ---- tar (full only) -----------------------------------------------------------------------
TARC=(--sparse "${TARX[@]}")
extract_cycles() {  # label archive cmd-prefix...
  local label=$1 archive=$2 r
  shift 2
  for ((r = 0; r <= RUNS; r++)); do
    remake_fs ext4 ext
    mkdir "$EXT/dest"
    timed full receive "$label" "$r" "$archive" -- "${DURABLE[@]}" "$EXT" "$@" "$EXT/dest" || return 1
    if want_verify "$r"; then verify full "$label" "$SRC/s1" "$EXT/dest" || return 1; fi
  done
}
log "measuring tar"
t=$STREAMS/s1.tar
series full send "tar" "$t" -- tar "${TARC[@]}" -C "$SRC/s1" -cf "$t" .
extract_cycles "tar -x" "$t" tar "${TARX[@]}" -xpf "$t" -C
rm -f "$t"
log "measuring tar | zstd -3"
t=$STREAMS/s1.tar.zst
series full send "tar | zstd -3" "$t" -- bash -c 'tar "${@:3}" -C "$1" -cf - . | zstd -3 -q -c >"$2"' \
  _ "$SRC/s1" "$t" "${TARC[@]}"
extract_cycles "zstd -d | tar -x" "$t" env ARCHIVE="$t" \
  bash -c "zstd -dc -q \"\$ARCHIVE\" | tar $(printf '%q ' "${TARX[@]}") -xpf - -C \"\$1\"" _
rm -f "$t"

# ---- rsync ---------------------------------------------------------------------------------
log "measuring rsync"
rsync_full() {
  local r
  for ((r = 0; r <= RUNS; r++)); do
    remake_fs ext4 ext
    timed full sync "rsync -aHAX --delete" "$r" - -- "${DURABLE[@]}" "$EXT" \
      rsync -aHAX --delete "$SRC/s1/" "$EXT/dest/" || return 1
    if want_verify "$r"; then verify full "rsync -aHAX --delete" "$SRC/s1" "$EXT/dest" || return 1; fi
  done
}
rsync_into_copy() {  # case base target
  local case=$1 base=$2 target=$3 r rc=0
  for ((r = 0; r <= RUNS; r++)); do
    btrfs -q subvolume snapshot "$SRC/$base" "$SRC/rsync-copy" >/dev/null || die "snapshot for rsync"
    timed "$case" sync "rsync -aHAX --delete" "$r" - -- "${DURABLE[@]}" "$SRC" \
      rsync -aHAX --delete "$SRC/$target/" "$SRC/rsync-copy/" || rc=1
    if [ $rc = 0 ] && want_verify "$r"; then
      verify "$case" "rsync -aHAX --delete" "$SRC/$target" "$SRC/rsync-copy" || rc=1
    fi
    btrfs -q subvolume delete -c "$SRC/rsync-copy" >/dev/null
    btrfs -q subvolume sync "$SRC" >/dev/null 2>&1
    [ $rc = 0 ] || return 1
  done
}
rsync_full
rsync_into_copy incremental s1 s2
rsync_into_copy quiet s2 s3
b=$STREAMS/rsync-batch
series incremental send "rsync --only-write-batch" "$b" -- \
  rsync -aHAX --delete --only-write-batch="$b" "$SRC/s2/" "$SRC/s1/"
series quiet send "rsync --only-write-batch" "$b" -- \
  rsync -aHAX --delete --only-write-batch="$b" "$SRC/s3/" "$SRC/s2/"
rm -f "$b" "$b.sh"
series incremental scan "rsync -a -n --delete" - -- rsync -a -n --delete "$SRC/s2/" "$SRC/s1/"
series quiet scan "rsync -a -n --delete" - -- rsync -a -n --delete "$SRC/s3/" "$SRC/s2/"
fi

# ---- report --------------------------------------------------------------------------------
DATE=$(date +%Y-%m-%d)
mkdir -p "$OUT"
MACHINE=$(machine_json "$ANYSEND" "$WORK")
ELAPSED=$(python3 -c "print(round($EPOCHREALTIME - $START))")
M_LOAD="$LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg)" \
M_MODE=$MODE$([ "$ONLY_ANYSEND" = 1 ] && echo " (anysend and anyrecv only)") M_RUNS=$RUNS M_JOURNAL_RUNS=$JOURNAL_RUNS M_DATE=$DATE M_ELAPSED=$ELAPSED M_COMMIT=$COMMIT M_MACHINE=$MACHINE \
M_SELECTION=$SELECTION M_S1=$S1STATS M_S2=$S2STATS M_S3=$S3STATS M_DAY=$DAY M_QUIET=$QUIET \
python3 - "$WORK/meta.json" <<'EOF'
import json, os, sys
e = os.environ
j = lambda k: json.loads(e[k])  # noqa: E731
json.dump({
  "mode": e["M_MODE"], "runs": int(e["M_RUNS"]), "journal_runs": int(e["M_JOURNAL_RUNS"]), "date": e["M_DATE"],
  "elapsed_s": int(e["M_ELAPSED"]), "commit": e["M_COMMIT"], "machine": j("M_MACHINE"),
  "loadavg_start_end": e["M_LOAD"],
  "dataset": {"selection": j("M_SELECTION"), "s1": j("M_S1"), "s2": j("M_S2"), "s3": j("M_S3"),
              "day_of_changes": j("M_DAY"), "quiet_day": j("M_QUIET")},
}, open(sys.argv[1], "w"), indent=1)
EOF
if [ "$MODE" = quick ]; then base="$OUT/$DATE-quick" latest="$OUT/latest-quick"
else base="$OUT/$DATE-full" latest="$OUT/latest"; fi
png="$latest.png"
if [ "$ONLY_ANYSEND" = 1 ]; then
  MODE="$MODE-anysend-only" base="$base-anysend-only" latest="" png="$base.png"
fi
python3 "$LIB_DIR/report.py" --kind run --meta "$WORK/meta.json" --timings "$TIMINGS" \
  --verify "$VERIFY" --json "$base.json" --md "$base.md" --png "$png" \
  || { log "report failed"; FAILURES=$((FAILURES + 1)); }
# the raw timings, to re-render the report: python3 bench/lib/report.py --kind run --meta ...
mkdir -p "$OUT/raw-$MODE"
cp "$WORK/meta.json" "$TIMINGS" "$VERIFY" "$OUT/raw-$MODE/" 2>/dev/null
REPORT_DONE=1
rm -rf "$OUT/raw-$MODE-interrupted"
if [ -n "$latest" ]; then
  cp "$base.json" "$latest.json" 2>/dev/null
  cp "$base.md" "$latest.md" 2>/dev/null
  log "results: $base.md ($latest.md, $latest.json, $latest.png)"
else
  log "results: $base.md ($base.json, $base.png)"
fi

if [ "$FAILURES" -gt 0 ]; then
  log "$FAILURES failure(s): see the Failures section of $base.md"
  exit 1
fi
log "all received trees equal their snapshots (${ELAPSED}s)"
