#!/usr/bin/env bash
# The main job on an embedded example: build anysend and anyrecv, make a tree, freeze two copies
# of it a "day" apart, then send a full stream of the first and an incremental stream from the
# first to the second, receive both into a new directory, and verify after each receive that the
# replica equals the frozen copy (names, types, content, mode, owner, mtime to the nanosecond,
# symlink targets, hardlinks). Needs only bash, coreutils, findutils and diffutils.
#
# The two copies are plain directories (cp -a), not snapshots of one file system, so the demo
# uses --path-match (objects are matched by path; renames travel as delete + create).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bins
send=$PWD/target/release/anysend
recv=$PWD/target/release/anyrecv

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
live=$work/live
mkdir -p "$live"

# Day one: a small tree with the things that usually go wrong.
mkdir -p "$live/src/lib" "$live/docs"
printf 'int main(void) { return 0; }\n' > "$live/src/main.c"
seq 1 20000 > "$live/src/lib/numbers.txt"
printf 'notes\n' > "$live/docs/notes.txt"
ln "$live/docs/notes.txt" "$live/docs/notes-hardlink.txt"
ln -s ../src/main.c "$live/docs/main-link"
truncate -s 64M "$live/sparse.img" && printf 'boot' | dd of="$live/sparse.img" bs=1 seek=1048576 conv=notrunc status=none
mkfifo "$live/fifo"
printf 'odd\n' > "$live/$(printf 'name with\nnewline')"
chmod 4755 "$live/src/main.c"
touch -d '2024-01-02 03:04:05.123456789' "$live/docs/notes.txt"
cp -a "$live" "$work/monday"

# Day two: edits, renames, deletions, a type change.
printf 'patched' | dd of="$live/src/lib/numbers.txt" bs=1 seek=4096 conv=notrunc status=none
mv "$live/src/lib" "$live/lib"
rm "$live/docs/notes-hardlink.txt"
ln "$live/src/main.c" "$live/main-hardlink.c"
rm "$live/fifo" && mkdir "$live/fifo"
chmod 0700 "$live/docs"
cp -a "$live" "$work/tuesday"

# Lists every property the demo checks, one line per name, for `diff`.
listing() {
  (cd "$1" && find . -printf '%p|%y|%m|%U|%G|%s|%T@|%l|%n\n' | LC_ALL=C sort)
}
verify() {
  diff <(listing "$1") <(listing "$2") >/dev/null || { echo "demo: metadata differs:"; diff <(listing "$1") <(listing "$2"); exit 1; }
  sums() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum); }
  diff <(sums "$1") <(sums "$2") >/dev/null || { echo "demo: content differs:"; diff <(sums "$1") <(sums "$2"); exit 1; }
  # Hardlinks: the same names must share an inode on both sides.
  links() { (cd "$1" && find . -type f -links +1 -printf '%i %p\n' | sort | awk '{print $1}' | uniq -c | awk '{print $1}' | sort | tr '\n' ' '); }
  [ "$(links "$1")" = "$(links "$2")" ] || { echo "demo: hardlink structure differs"; exit 1; }
}

state=$work/state
echo "== full stream of monday =="
"$send" -q --path-match -f "$work/full.stream" "$work/monday"
"$recv" --state-dir "$state" -f "$work/full.stream" "$work/replica"
verify "$work/monday" "$work/replica"
echo "replica equals monday ($(stat -c %s "$work/full.stream") stream bytes)"

echo "== incremental stream monday -> tuesday =="
"$send" -q --path-match --from "$work/monday" -f "$work/incr.stream" "$work/tuesday"
"$recv" --dump -f "$work/incr.stream" | head -n 12
"$recv" --state-dir "$state" -f "$work/incr.stream" "$work/replica"
verify "$work/tuesday" "$work/replica"
echo "replica equals tuesday ($(stat -c %s "$work/incr.stream") stream bytes)"

echo "== the same incremental again is refused (the replica is no longer at monday) =="
if "$recv" --state-dir "$state" -f "$work/incr.stream" "$work/replica" 2>"$work/err"; then
  echo "demo: a stream was applied onto the wrong base"; exit 1
fi
sed 's/^/  /' "$work/err"
verify "$work/tuesday" "$work/replica"
echo "demo: full and incremental round trip verified"
