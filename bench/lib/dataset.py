#!/usr/bin/env python3
"""Deterministic data set and change steps for the anysend benchmarks.

Every choice is made from sorted file lists with a fixed-seed PRNG, so two runs on the same
machine (same source files) make the same tree and the same changes.

Subcommands (all paths absolute):
  select --out LIST [--max-entries N] [--max-files N] [--max-bytes B] [--max-file-size B]
         [--exclude PATH]... ROOT...
      Write a NUL-separated list (paths relative to /) of the entries under ROOTs, walked in
      sorted order, directories before their contents, ancestors of each ROOT first, stopping at
      the first limit. Feed it to `tar --null --no-recursion -T LIST`.
  extras TREE --seed S
      Add a little metadata variety: user xattrs, POSIX ACLs, fifos, empty dirs, odd names.
  bigfile PATH --size B --seed S --pool DIR
      A file of B bytes of mixed real content (slices of files under DIR) and random bytes.
  sparse PATH --size B --chunks N --chunk-size B --seed S
      A sparse file of B bytes apparent size holding N data chunks.
  day TREE --seed S [--scale quick|full]
      "A day of changes" (see README.md).
  quiet TREE --seed S [--count N]
      "A quiet day": N files edited in place.
  stats TREE
      Print JSON counts (entries, files, dirs, symlinks, bytes, allocated bytes) of TREE.
"""

import argparse
import json
import os
import random
import stat
import sys

BIG_DIR = "bench-big"  # the 1 GiB files and the sparse file live here, out of the day's picks


def walk_sorted(root, skip_top=()):
    """Yield (relpath, lstat) of every entry under root (not root itself), sorted, dirs first."""
    stack = [""]
    while stack:
        rel = stack.pop()
        base = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        subdirs = []
        for name in names:
            r = os.path.join(rel, name) if rel else name
            if not rel and name in skip_top:
                continue
            try:
                st = os.lstat(os.path.join(root, r))
            except OSError:
                continue
            yield r, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(r)
        stack.extend(reversed(subdirs))


def cmd_select(a):
    out = []
    entries = files = nbytes = 0
    excl = [os.path.normpath(e) for e in a.exclude]
    emitted = set()
    stop = False
    roots = [os.path.normpath(r) for r in a.roots]
    for k, root in enumerate(roots):
        if not os.path.isdir(root):
            print(f"dataset: skipping missing source {root}", file=sys.stderr)
            continue
        earlier = roots[:k]
        if any(root == e or root.startswith(e + "/") for e in earlier):
            continue  # already walked as part of an earlier root
        skip = excl + [e for e in earlier if e.startswith(root + "/")]
        dev = os.lstat(root).st_dev
        # ancestors of the root, then the root itself, so tar recreates their metadata
        parts = root.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in emitted:
                emitted.add(p)
                out.append(p)
                entries += 1
        for rel, st in walk_sorted(root):
            full = os.path.join(root, rel)
            if any(full == e or full.startswith(e + "/") for e in skip):
                continue
            if st.st_dev != dev:
                continue
            mode = st.st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                continue
            if stat.S_ISREG(mode):
                if a.max_file_size and st.st_size > a.max_file_size:
                    continue
                if a.max_bytes and nbytes + st.st_size > a.max_bytes:
                    stop = True
                    break
                files += 1
                nbytes += st.st_size
            out.append(full.lstrip("/"))
            entries += 1
            if (a.max_entries and entries >= a.max_entries) or (a.max_files and files >= a.max_files):
                stop = True
                break
        if stop:
            break
    with open(a.out, "wb") as f:
        for p in out:
            f.write(p.encode("utf-8", "surrogateescape") + b"\0")
    print(json.dumps({"entries": entries, "files": files, "bytes": nbytes}))


def regular_files(tree, min_size=0):
    """Sorted regular, single-link files of tree outside BIG_DIR: list of (rel, size)."""
    res = []
    for rel, st in walk_sorted(tree, skip_top=(BIG_DIR,)):
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size >= min_size:
            res.append((rel, st.st_size))
    return res


def directories(tree):
    return [rel for rel, st in walk_sorted(tree, skip_top=(BIG_DIR,)) if stat.S_ISDIR(st.st_mode)]


class Filler:
    """Mixed content: slices of real files from a pool, and random bytes."""

    def __init__(self, rng, pool_files):
        self.rng = rng
        self.pool = pool_files  # absolute paths with sizes

    def chunk(self, n):
        rng = self.rng
        if self.pool and rng.random() < 0.7:
            path, size = self.pool[rng.randrange(len(self.pool))]
            try:
                with open(path, "rb") as f:
                    off = rng.randrange(max(1, size - n)) if size > n else 0
                    f.seek(off)
                    data = f.read(n)
                if data:
                    return data
            except OSError:
                pass
        return rng.randbytes(n)

    def write(self, f, total, lo=64 << 10, hi=1 << 20):
        left = total
        while left > 0:
            n = min(left, self.rng.randint(lo, hi))
            d = self.chunk(n)
            f.write(d)
            left -= len(d)


def pool_of(tree, min_size=256 << 10, limit=4000):
    files = [(os.path.join(tree, r), s) for r, s in regular_files(tree, min_size)]
    if len(files) > limit:
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def cmd_bigfile(a):
    rng = random.Random(a.seed)
    pool = pool_of(a.pool)
    os.makedirs(os.path.dirname(a.path), exist_ok=True)
    with open(a.path, "wb") as f:
        Filler(rng, pool).write(f, a.size)


def cmd_sparse(a):
    rng = random.Random(a.seed)
    os.makedirs(os.path.dirname(a.path), exist_ok=True)
    with open(a.path, "wb") as f:
        f.truncate(a.size)
        span = a.size // a.chunks
        for i in range(a.chunks):
            off = (i * span + span // 3) // 4096 * 4096
            f.seek(off)
            f.write(rng.randbytes(a.chunk_size))


def cmd_extras(a):
    rng = random.Random(a.seed)
    files = regular_files(a.tree)
    step = max(1, len(files) // 100)
    for i, (rel, _) in enumerate(files[::step][:100]):
        os.setxattr(os.path.join(a.tree, rel), b"user.bench", b"value-%d" % i, follow_symlinks=False)
    acl_files = files[step // 2 :: step][:10]
    for rel, _ in acl_files:
        os.system(f"setfacl -m u:1001:rw- '{os.path.join(a.tree, rel)}' 2>/dev/null")
    extra = os.path.join(a.tree, "bench-extras")
    os.makedirs(extra, exist_ok=True)
    for i in range(3):
        os.mkfifo(os.path.join(extra, f"fifo{i}"))
        os.makedirs(os.path.join(extra, f"empty{i}"), exist_ok=True)
    for name in ["with space", "tab\there", "newline\nname", "\u00e9t\u00e9", "latin1-\udce9"]:
        with open(os.path.join(extra, name).encode("utf-8", "surrogateescape"), "wb") as f:
            f.write(rng.randbytes(100))
    os.symlink("../usr", os.path.join(extra, "link-to-usr"))
    os.symlink("dangling-target", os.path.join(extra, "dangling"))


def edit_in_place(path, rng, size, maxlen=4096):
    if size == 0:
        return
    n = min(rng.randint(16, maxlen), size)
    off = rng.randrange(size - n + 1)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(rng.randbytes(n))


def cmd_day(a):
    quick = a.scale == "quick"
    rng = random.Random(a.seed)
    T = a.tree
    J = lambda r: os.path.join(T, r)  # noqa: E731
    files = regular_files(T)
    dirs = directories(T)
    nfiles = len(files)
    log = {}

    # Subtree sizes (entries) of every directory, for picking "large" ones.
    counts = {d: 0 for d in dirs}
    for rel, _ in files:
        p = os.path.dirname(rel)
        while p:
            if p in counts:
                counts[p] += 1
            p = os.path.dirname(p)

    lo, hi = (20, 400) if quick else (1000, 8000)
    big_dirs = sorted((d for d in dirs if lo <= counts[d] <= hi and d.count("/") >= 1),
                      key=lambda d: (-counts[d], d))
    chosen = []
    for d in big_dirs:
        if all(not (d == c or d.startswith(c + "/") or c.startswith(d + "/")) for c in chosen):
            chosen.append(d)
        if len(chosen) == 2:
            break
    rename_dirs = chosen
    lo2, hi2 = (5, 100) if quick else (100, 1500)
    del_cands = sorted((d for d in dirs if lo2 <= counts[d] <= hi2 and d.count("/") >= 2),
                       key=lambda d: d)
    del_dirs = []
    for d in rng.sample(del_cands, min(len(del_cands), 12)):
        if all(not (d == c or d.startswith(c + "/") or c.startswith(d + "/"))
               for c in del_dirs + rename_dirs):
            del_dirs.append(d)
        if len(del_dirs) == 3:
            break

    def outside(rel):
        return all(not rel.startswith(d + "/") for d in rename_dirs + del_dirs)

    # 1. in-place edits to 1% of files (inside renamed/deleted dirs too: they happen first)
    picks = rng.sample(files, max(1, nfiles // 100))
    for rel, size in picks:
        edit_in_place(J(rel), rng, size)
    log["edited"] = len(picks)

    # 2. appends to 0.5% of files
    picks = rng.sample(files, max(1, nfiles // 200))
    for rel, _ in picks:
        with open(J(rel), "ab") as f:
            f.write(rng.randbytes(rng.randint(100, 64 << 10)))
    log["appended"] = len(picks)

    # 3. chmod and chown on 0.2% each
    free = [f for f in files if outside(f[0])]
    for rel, _ in rng.sample(free, max(1, nfiles // 500)):
        st = os.lstat(J(rel))
        os.chmod(J(rel), (st.st_mode & 0o7777) ^ 0o044)
    for i, (rel, _) in enumerate(rng.sample(free, max(1, nfiles // 500))):
        os.lchown(J(rel), 1000 + i % 3, 1000)
    log["chmod"] = log["chown"] = max(1, nfiles // 500)

    # 4. 4 KiB change inside each big file
    bigdir = J(BIG_DIR)
    if os.path.isdir(bigdir):
        for name in sorted(os.listdir(bigdir)):
            p = os.path.join(bigdir, name)
            if name.startswith("big") and os.path.isfile(p):
                size = os.path.getsize(p)
                off = rng.randrange(size // 4096) * 4096
                with open(p, "r+b") as f:
                    f.seek(off)
                    f.write(rng.randbytes(4096))
        log["big_files_4k_edit"] = True

    # 5. new files (~1000) in existing directories and two new ones, and one 100 MiB file
    pool = pool_of(T, min_size=64 << 10, limit=2000)
    filler = Filler(rng, pool)
    free_dirs = [d for d in dirs if outside(d + "/x") and d not in del_dirs]
    new_dirs = ["bench-new/a", "bench-new/b/c"]
    for d in new_dirs:
        os.makedirs(J(d), exist_ok=True)
    nnew = 50 if quick else 1000
    sizes = [s for _, s in files]
    for i in range(nnew):
        d = new_dirs[i % 2] if i % 5 == 0 else free_dirs[rng.randrange(len(free_dirs))]
        size = min(sizes[rng.randrange(len(sizes))], 4 << 20)
        with open(J(os.path.join(d, f"new-{i:04d}.dat")), "wb") as f:
            filler.write(f, size, 4096, 256 << 10)
    with open(J("bench-new/day-file.bin"), "wb") as f:
        filler.write(f, (1 << 20) if quick else (100 << 20))
    log["new_files"] = nnew + 1

    # 6. new hardlinks
    free = [f for f in regular_files(T) if outside(f[0])]
    nlinks = 10 if quick else 100
    for i, (rel, _) in enumerate(rng.sample(free, nlinks)):
        tdir = free_dirs[rng.randrange(len(free_dirs))] if i % 2 else os.path.dirname(rel)
        os.link(J(rel), J(os.path.join(tdir, f"hardlink-{i:03d}-" + os.path.basename(rel))))
    log["hardlinks"] = nlinks

    # 7. symlink retargets and xattr changes
    links = [r for r, st in walk_sorted(T, skip_top=(BIG_DIR,))
             if stat.S_ISLNK(st.st_mode) and outside(r)]
    for rel in rng.sample(links, min(len(links), 20)):
        tgt = os.readlink(J(rel))
        os.unlink(J(rel))
        os.symlink(tgt + ".changed", J(rel))
    for rel, _ in rng.sample(free, 20):
        os.setxattr(J(rel), b"user.day", b"changed", follow_symlinks=False)

    # 8. moves between directories
    free = [f for f in regular_files(T) if outside(f[0])]
    nmoves = 20 if quick else 200
    moved = 0
    for rel, _ in rng.sample(free, nmoves):
        tdir = free_dirs[rng.randrange(len(free_dirs))]
        if tdir == os.path.dirname(rel):
            continue
        dst = os.path.join(tdir, "moved-" + os.path.basename(rel))
        if os.path.lexists(J(dst)):
            continue
        os.rename(J(rel), J(dst))
        moved += 1
    log["moved"] = moved

    # 9. deletions: 0.5% of files and whole directories
    free = [f for f in regular_files(T) if outside(f[0])]
    picks = rng.sample(free, max(1, nfiles // 200))
    for rel, _ in picks:
        os.unlink(J(rel))
    log["deleted_files"] = len(picks)
    for d in del_dirs:
        os.system(f"rm -rf -- '{J(d)}'")
    log["deleted_dirs"] = {d: counts[d] for d in del_dirs}

    # 10. renames of large directories (last, so earlier edits happened inside them)
    for d in rename_dirs:
        os.rename(J(d), J(d + "-renamed"))
    log["renamed_dirs"] = {d: counts[d] for d in rename_dirs}
    print(json.dumps(log))


def cmd_quiet(a):
    rng = random.Random(a.seed)
    files = [f for f in regular_files(a.tree) if f[1] > 0]
    for rel, size in rng.sample(files, a.count):
        edit_in_place(os.path.join(a.tree, rel), rng, size, 512)
    print(json.dumps({"edited": a.count}))


def cmd_stats(a):
    s = {"entries": 0, "files": 0, "dirs": 0, "symlinks": 0, "other": 0, "hardlinked_files": 0,
         "bytes": 0, "allocated_bytes": 0}
    for _, st in walk_sorted(a.tree):
        s["entries"] += 1
        m = st.st_mode
        if stat.S_ISREG(m):
            s["files"] += 1
            s["bytes"] += st.st_size
            s["allocated_bytes"] += st.st_blocks * 512
            if st.st_nlink > 1:
                s["hardlinked_files"] += 1
        elif stat.S_ISDIR(m):
            s["dirs"] += 1
        elif stat.S_ISLNK(m):
            s["symlinks"] += 1
        else:
            s["other"] += 1
    print(json.dumps(s))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select")
    s.add_argument("--out", required=True)
    s.add_argument("--max-entries", type=int, default=0)
    s.add_argument("--max-files", type=int, default=0)
    s.add_argument("--max-bytes", type=int, default=0)
    s.add_argument("--max-file-size", type=int, default=0)
    s.add_argument("--exclude", action="append", default=[])
    s.add_argument("roots", nargs="+")
    s = sub.add_parser("extras")
    s.add_argument("tree")
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("bigfile")
    s.add_argument("path")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--pool", required=True)
    s = sub.add_parser("sparse")
    s.add_argument("path")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--chunks", type=int, default=4)
    s.add_argument("--chunk-size", type=int, default=1 << 20)
    s.add_argument("--seed", type=int, default=7)
    s = sub.add_parser("day")
    s.add_argument("tree")
    s.add_argument("--seed", type=int, default=2)
    s.add_argument("--scale", choices=["quick", "full"], default="full")
    s = sub.add_parser("quiet")
    s.add_argument("tree")
    s.add_argument("--seed", type=int, default=3)
    s.add_argument("--count", type=int, default=10)
    s = sub.add_parser("stats")
    s.add_argument("tree")
    a = p.parse_args()
    {"select": cmd_select, "extras": cmd_extras, "bigfile": cmd_bigfile, "sparse": cmd_sparse,
     "day": cmd_day, "quiet": cmd_quiet, "stats": cmd_stats}[a.cmd](a)


if __name__ == "__main__":
    main()
