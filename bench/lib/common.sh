# Shared by bench/run.sh and bench/walk.sh: work directory, loop-mounted file systems with
# cleanup on exit, building the binaries, machine information and the timing harness.
# Sourced, not run.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
LIB_DIR="$BENCH_DIR/lib"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 2; }

need_root_linux() {
  [ "$(uname -s)" = Linux ] || die "needs Linux"
  [ "$(id -u)" = 0 ] || die "needs root (loop devices, btrfs snapshots, chown)"
  local t
  for t in btrfs mkfs.btrfs mkfs.ext4 losetup rsync tar zstd python3 /usr/bin/time; do
    command -v "$t" >/dev/null || die "missing tool: $t"
  done
  modprobe loop 2>/dev/null || true
  modprobe btrfs 2>/dev/null || true
}

# ---- work directory and cleanup ------------------------------------------------------------
MOUNTS=()   # mount points we mounted, unmounted in reverse order
export LOOP_DIO=""  # "on" when every loop device does direct I/O (make_fs)
LOOPS=()    # loop devices we attached
WORK=""
KEEP_WORK=0

cleanup() {
  local rc=$?
  set +e
  local i
  declare -F on_exit >/dev/null && on_exit "$rc"
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    if mountpoint -q "${MOUNTS[i]}"; then
      umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}"
    fi
  done
  for i in "${LOOPS[@]}"; do
    losetup -d "$i" 2>/dev/null
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ] && [ "$KEEP_WORK" = 0 ]; then
    rm -rf -- "$WORK"
  fi
  exit "$rc"
}

setup_work() {  # setup_work NAME
  local base=${BENCH_WORK:-$BENCH_DIR/work}
  mkdir -p "$base"
  WORK=$(mktemp -d "$base/$1.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  log "work directory: $WORK"
}

# make_fs KIND NAME SIZE: mounts a fresh KIND (btrfs|ext4) file system at $WORK/mnt/NAME on a
# sparse loop file $WORK/img/NAME.img. Not in $(...): it records the mount and the loop device
# for cleanup in this shell.
make_fs() {
  local kind=$1 name=$2 size=$3
  local img="$WORK/img/$name.img" mnt="$WORK/mnt/$name" dev
  mkdir -p "$WORK/img" "$mnt"
  rm -f "$img"
  truncate -s "$size" "$img"
  # Direct I/O: the loop file is written through to the host's disk, not cached a second time
  # by the host as well as by the file system on it (a real disk has no such cache). Cached
  # twice, a full receive left the host's memory full and the receive timed right after it
  # varied by a third between identical runs. Where the host's file system cannot (tmpfs),
  # the loop device caches as before; LOOP_DIO says which.
  dev=$(losetup --find --show --direct-io=on --sector-size 4096 "$img" 2>/dev/null) \
    || dev=$(losetup --find --show "$img") || die "losetup failed for $img"
  LOOPS+=("$dev")
  if [ "$(cat "/sys/block/${dev#/dev/}/loop/dio" 2>/dev/null)" = 1 ]; then
    LOOP_DIO=${LOOP_DIO:-on}
  else
    LOOP_DIO=off
  fi
  case $kind in
    btrfs) mkfs.btrfs -q -f "$dev" >/dev/null || die "mkfs.btrfs $dev"
           mount -o discard=async "$dev" "$mnt" || die "mount $dev" ;;
    ext4)  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$dev" >/dev/null \
             || die "mkfs.ext4 $dev"
           # noinit_itable: no background inode-table zeroing that would disturb timings
           mount -o noinit_itable "$dev" "$mnt" || die "mount $dev" ;;
  esac
  MOUNTS+=("$mnt")
}

# settle_cache FILE...: the page cache emptied of clean pages (after a sync) and FILE... read
# back into it. A receive cycle starts from it: what the machine did before (a 7 GiB full
# receive, the sends) otherwise decides how much memory the kernel must reclaim while the
# next receive writes, and one incremental receive varied by up to 30% from that alone. (From
# here, identical runs differed by a few percent on one day, by up to 25% on another: see
# bench/README.md.)
settle_cache() {
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || log "could not drop the page cache"
  cat -- "$@" >/dev/null
}

# remake_fs KIND NAME: unmount, re-create and remount an existing file system (a fresh
# destination; mkfs discards, so the sparse loop file gives its space back).
remake_fs() {
  local kind=$1 name=$2 mnt="$WORK/mnt/$2" dev
  dev=$(findmnt -n -o SOURCE --target "$mnt")
  sync
  umount "$mnt" || die "umount $mnt"
  case $kind in
    btrfs) mkfs.btrfs -q -f "$dev" >/dev/null || die "mkfs.btrfs $dev"
           mount -o discard=async "$dev" "$mnt" || die "mount $dev" ;;
    ext4)  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$dev" >/dev/null \
             || die "mkfs.ext4 $dev"
           mount -o noinit_itable "$dev" "$mnt" || die "mount $dev" ;;
  esac
}

# ---- the binaries under test --------------------------------------------------------------
ANYSEND=""
ANYRECV=""
build_binaries() {
  if [ -n "${ANYSEND_BIN:-}" ] && [ -n "${ANYRECV_BIN:-}" ]; then
    ANYSEND=$ANYSEND_BIN ANYRECV=$ANYRECV_BIN
    return 0
  fi
  command -v cargo >/dev/null || die "cargo not found (or set ANYSEND_BIN and ANYRECV_BIN)"
  log "building anysend and anyrecv (release)"
  if ! (cd "$REPO_DIR" && cargo build --release -q --bins); then
    log "BUILD FAILED: cargo build --release --bins"
    return 1
  fi
  local tdir
  tdir=$(cd "$REPO_DIR" && cargo metadata --format-version 1 --no-deps \
         | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  [ -x "$tdir/release/anysend" ] && [ -x "$tdir/release/anyrecv" ] || return 1
  # private copies: a rebuild by someone else during a long run must not swap the binaries
  mkdir -p "$WORK/bin"
  cp "$tdir/release/anysend" "$tdir/release/anyrecv" "$WORK/bin/" || return 1
  ANYSEND="$WORK/bin/anysend" ANYRECV="$WORK/bin/anyrecv"
}

# ---- machine information -------------------------------------------------------------------
machine_json() {
  python3 - "$@" <<'EOF'
import json, os, platform, re, subprocess, sys
def first(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        return out.splitlines()[0] if out else ""
    except OSError:
        return ""
cpu = ""
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
mem = 0
with open("/proc/meminfo") as f:
    for line in f:
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
print(json.dumps({
    "cpu": cpu, "cores": os.cpu_count(), "ram_bytes": mem,
    "ram": f"{mem / 2**30:.1f} GiB", "kernel": platform.release(),
    "btrfs_progs": first(["btrfs", "--version"]),
    "rsync": first(["rsync", "--version"]),
    "tar": first(["tar", "--version"]),
    "zstd": first(["zstd", "--version"]).strip("* "),
    "anysend": first([sys.argv[1], "--version"]) if len(sys.argv) > 1 else "",
    "host_fs_of_loop_files": first(["findmnt", "-n", "-o", "FSTYPE", "--target", sys.argv[2]]) if len(sys.argv) > 2 else "",
    "loop_direct_io": os.environ.get("LOOP_DIO", ""),
}))
EOF
}

# ---- timing harness ------------------------------------------------------------------------
# Every timed command appends one line to $TIMINGS (tab-separated):
#   case op tool run t0 t1 maxrss_kb bytes rc errfile
# run 0 is the warm-up run (kept in the raw data, left out of the statistics).
TIMINGS=""
VERIFY=""
FAILURES=0
LAST_RC=0

# timed CASE OP TOOL RUN OUTFILE -- CMD...   (OUTFILE "-" when there is no output file)
timed() {
  local case=$1 op=$2 tool=$3 run=$4 outf=$5
  shift 6
  local tf="$WORK/time.$$" errf="$WORK/logs/$case.$op.${tool//[^A-Za-z0-9]/_}.$run.err"
  mkdir -p "$WORK/logs"
  sync
  local t0=$EPOCHREALTIME
  /usr/bin/time -v -o "$tf" "$@" >"$WORK/logs/last.out" 2>"$errf"
  local rc=$?
  local t1=$EPOCHREALTIME
  if [ "$rc" = 0 ] && [ "$outf" != - ] && [ ! -e "$outf" ]; then
    rc=200
    echo "bench: the command exited 0 but wrote no $outf" >>"$errf"
  fi
  local rss cpu bytes=""
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
  # CPU time (user + system, the command's children included): steadier than wall time where
  # the host's write-back makes one run differ from the next.
  cpu=$(awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ {s += $2} END {printf "%.2f", s}' "$tf")
  if [ "$outf" != - ] && [ -e "$outf" ]; then bytes=$(stat -c %s "$outf"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$op" "$tool" "$run" "$t0" "$t1" \
    "${rss:-0}" "$bytes" "$rc" "$errf" "$cpu" >>"$TIMINGS"
  LAST_RC=$rc
  if [ "$rc" != 0 ]; then
    FAILURES=$((FAILURES + 1))
    log "FAILED ($rc): $tool $op $case run $run: $* -- $(tail -n 3 "$errf" | tr '\n' ' ')"
    printf '%s\n' "$*" >>"$errf"
  fi
  return "$rc"
}

# verify CASE TOOL SNAP DEST: the received tree must equal the snapshot (content, hardlinks,
# modes, owners, times, ACLs, xattrs); only a line for the root directory itself is tolerated.
verify() {
  local case=$1 tool=$2 snap=$3 dest=$4
  local out="$WORK/logs/verify.$case.${tool//[^A-Za-z0-9]/_}.txt" rc
  mkdir -p "$WORK/logs"
  rsync -naHAXc --delete --itemize-changes "$snap/" "$dest/" >"$out" 2>&1
  rc=$?
  local bad
  bad=$(grep -v -E '^[^ ]+ \./$' "$out" | head -n 20)
  if [ "$rc" = 0 ] && [ -z "$bad" ]; then
    printf '%s\t%s\tok\t%s\n' "$case" "$tool" "$(grep -c '' "$out")" >>"$VERIFY"
  else
    FAILURES=$((FAILURES + 1))
    log "VERIFY FAILED: $tool $case ($snap vs $dest), rsync rc $rc:"
    printf '%s\n' "$bad" | sed 's/^/    /' >&2
    printf '%s\t%s\tFAIL\t%s\n' "$case" "$tool" "rc=$rc; $(printf '%s' "$bad" | head -n 5 | tr '\n\t' '  ')" >>"$VERIFY"
    return 1
  fi
}
