#!/usr/bin/env bash
# The diff-core walk benchmark: how fast anysend compares two snapshots, against rsync's scan.
#
#   bash bench/walk.sh [--entries N] [--runs N] [--out DIR] [--keep-work]
#
# A btrfs tree of N entries (default 200,000) of real files; read-only snapshots s1 and s2 with
# no change between them, then s3 with 1% of the files edited in place. Warm cache, one warm-up
# run, median of --runs (default 5) timed runs:
#   unchanged:  anysend -n --from s1 s2   vs  rsync -a -n --delete s2/ s1/   (target <= 0.3x)
#               (and anysend -n --full-walk: every entry compared, no btrfs change index)
#   changed-1%: anysend -n --from s2 s3   vs  rsync -a -n --delete s3/ s2/, and the real
#               anysend --from s2 s3 -f FILE (peak RSS, stream bytes)
# Writes bench/results/walk-latest.{md,json} (or into --out). Needs root and Linux.
set -uo pipefail
source "$(dirname "$0")/lib/common.sh"

ENTRIES=200000
RUNS=5
OUT="$BENCH_DIR/results"
while [ $# -gt 0 ]; do
  case $1 in
    --entries) ENTRIES=$2; shift ;;
    --entries=*) ENTRIES=${1#*=} ;;
    --runs) RUNS=$2; shift ;;
    --runs=*) RUNS=${1#*=} ;;
    --out) OUT=$2; shift ;;
    --out=*) OUT=${1#*=} ;;
    --keep-work) KEEP_WORK=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
  shift
done
[[ $ENTRIES =~ ^[1-9][0-9]*$ ]] || die "--entries needs a positive number"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"

need_root_linux
START=$EPOCHREALTIME
setup_work walk
TIMINGS="$WORK/timings.tsv"
: >"$TIMINGS"
COMMIT=$(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO_DIR" && git diff --quiet HEAD -- crates 2>/dev/null || echo "+dirty")
COMMIT="$COMMIT, built $(date -u +%H:%M) UTC"
build_binaries || die "cargo build --release --bins failed"

make_fs btrfs src 48G
SRC=$WORK/mnt/src
DS="python3 $LIB_DIR/dataset.py"
btrfs -q subvolume create "$SRC/live" >/dev/null || die "btrfs subvolume create"
SELECTION=$($DS select --out "$WORK/list" --max-entries "$ENTRIES" \
  --exclude /usr/lib/jvm --exclude /usr/lib/google-cloud-sdk \
  --exclude /root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib \
  --exclude /root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib \
  /usr /root/.cargo/registry /root/.rustup/toolchains /var/lib /opt) || die "selecting files"
log "tree: copying $SELECTION"
TARX=(--xattrs "--xattrs-include=*" --acls --numeric-owner)
tar -C / --null --no-recursion -T "$WORK/list" "${TARX[@]}" -cf - 2>"$WORK/copy.err" \
  | tar -C "$SRC/live" "${TARX[@]}" -xpf - 2>>"$WORK/copy.err" \
  || { tail -n 5 "$WORK/copy.err" >&2; die "copying the tree"; }
sync
btrfs -q subvolume snapshot -r "$SRC/live" "$SRC/s1" >/dev/null || die "snapshot s1"
btrfs -q subvolume snapshot -r "$SRC/live" "$SRC/s2" >/dev/null || die "snapshot s2"
S1STATS=$($DS stats "$SRC/s1")
NFILES=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["files"])' "$S1STATS")
CHANGED=$((NFILES / 100))
sleep 1.1  # rsync's quick check compares mtimes to the second
$DS quiet "$SRC/live" --seed 5 --count "$CHANGED" >/dev/null || die "changing 1% of files"
sync
btrfs -q subvolume snapshot -r "$SRC/live" "$SRC/s3" >/dev/null || die "snapshot s3"
log "tree: s1 $S1STATS; s3 has $CHANGED files changed"

series() {  # case op tool outfile -- cmd...
  local case=$1 op=$2 tool=$3 outf=$4 r
  shift 5
  for ((r = 0; r <= RUNS; r++)); do
    [ "$outf" != - ] && rm -f "$outf"
    timed "$case" "$op" "$tool" "$r" "$outf" -- "$@" || return 1
  done
}
log "unchanged tree"
series unchanged scan "anysend -n" - -- "$ANYSEND" -n --from "$SRC/s1" "$SRC/s2"
cp "$WORK/logs/last.out" "$WORK/anysend-n-unchanged.txt" 2>/dev/null
series unchanged scan "anysend -n --full-walk" - -- "$ANYSEND" -n --full-walk --from "$SRC/s1" "$SRC/s2"
series unchanged scan "rsync -a -n --delete" - -- rsync -a -n --delete "$SRC/s2/" "$SRC/s1/"
log "1% of files changed"
series changed-1% scan "anysend -n" - -- "$ANYSEND" -n --from "$SRC/s2" "$SRC/s3"
cp "$WORK/logs/last.out" "$WORK/anysend-n-changed.txt" 2>/dev/null
series changed-1% scan "anysend -n --full-walk" - -- "$ANYSEND" -n --full-walk --from "$SRC/s2" "$SRC/s3"
series changed-1% scan "rsync -a -n --delete" - -- rsync -a -n --delete "$SRC/s3/" "$SRC/s2/"
series changed-1% send "anysend" "$WORK/stream" -- "$ANYSEND" -q --from "$SRC/s2" -f "$WORK/stream" "$SRC/s3"

# How each walk went (btrfs change index or every entry), as anysend -v reports it.
for pair in "s1 s2 unchanged" "s2 s3 changed"; do
  set -- $pair
  for mode in "" --full-walk; do
    "$ANYSEND" -n -v $mode --from "$SRC/$1" "$SRC/$2" 2>&1 >/dev/null | grep 'walk:' \
      | sed "s/^/anysend -n $mode: /" >>"$WORK/walk-$3.txt"
  done
done

DATE=$(date +%Y-%m-%d)
mkdir -p "$OUT"
MACHINE=$(machine_json "$ANYSEND" "$WORK")
M_RUNS=$RUNS M_DATE=$DATE M_COMMIT=$COMMIT M_MACHINE=$MACHINE M_S1=$S1STATS M_CHANGED=$CHANGED \
M_SELECTION=$SELECTION M_ELAPSED=$(python3 -c "print(round($EPOCHREALTIME - $START))") \
M_EST_U="$(head -c 4000 "$WORK/anysend-n-unchanged.txt" 2>/dev/null; cat "$WORK/walk-unchanged.txt" 2>/dev/null)" \
M_EST_C="$(head -c 4000 "$WORK/anysend-n-changed.txt" 2>/dev/null; cat "$WORK/walk-changed.txt" 2>/dev/null)" \
python3 - "$WORK/meta.json" <<'EOF'
import json, os, sys
e = os.environ
json.dump({"mode": "walk", "runs": int(e["M_RUNS"]), "date": e["M_DATE"], "commit": e["M_COMMIT"],
           "elapsed_s": int(e["M_ELAPSED"]), "machine": json.loads(e["M_MACHINE"]),
           "dataset": {"selection": json.loads(e["M_SELECTION"]), "s1": json.loads(e["M_S1"]),
                       "changed_files": int(e["M_CHANGED"])},
           "anysend_n_output": {"unchanged": e["M_EST_U"], "changed-1%": e["M_EST_C"]}},
          open(sys.argv[1], "w"), indent=1)
EOF
python3 "$LIB_DIR/report.py" --kind walk --meta "$WORK/meta.json" --timings "$TIMINGS" \
  --json "$OUT/walk-latest.json" --md "$OUT/walk-latest.md" || die "report failed"
mkdir -p "$OUT/raw-walk"
cp "$WORK/meta.json" "$TIMINGS" "$OUT/raw-walk/"
log "results: $OUT/walk-latest.md"
cat "$OUT/walk-latest.md"
[ "$FAILURES" = 0 ] || exit 1
