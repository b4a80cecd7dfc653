//! The starting corpus: one scenario per family of hazards a send/receive
//! implementation gets wrong (rename orderings, link structure, type
//! changes, odd names, special files, holes, xattrs/ACLs, flags, mode bits,
//! ownership, timestamps, in-place edits, truncation).
//!
//! The scenarios of what the kernel does by itself beside what a step asks (capabilities it
//! drops, default ACLs it applies, flags shared by hard links, holes in whole blocks) are in
//! the `implicit` submodule.
//!
//! Each scenario is small so the whole corpus runs in seconds; what matters
//! is the shape of the change between consecutive steps, not volume.
//! Timestamps and ownership are set explicitly where the point is to test
//! them, and always last in a step (later changes would move them again).

mod implicit;

use crate::fsops::*;
use crate::scenario::Scenario;
use crate::xattr_values::cap_net_bind_service;
use rustix::fs::IFlags;
use std::path::Path;

/// Names of the corpus scenarios, in order (handy for per-scenario tests). They are listed once,
/// in [`corpus_tests!`](crate::corpus_tests), which also makes the per-scenario test functions.
pub const NAMES: &[&str] = crate::corpus_tests!(@list [deep_tree] @names);

/// One `#[test]` per corpus scenario, named after it and calling `$run(name)`, and a
/// `const COVERED: &[&str]` naming them: `corpus_tests!(chain);` in a test file that takes every
/// scenario through one runner. `corpus_tests!(run, except deep_tree);` leaves out the tree
/// deeper than PATH_MAX, for runners that cannot carry such paths (btrfs send).
///
/// The scenario names are listed here and nowhere else ([`NAMES`] is made from this list), so a
/// new scenario gets its test in every such file at once.
#[macro_export]
macro_rules! corpus_tests {
    ($run:ident) => {
        $crate::corpus_tests!(@list [deep_tree] @tests $run);
    };
    ($run:ident, except deep_tree) => {
        $crate::corpus_tests!(@list [] @tests $run);
    };
    // The names in corpus order (`deep_tree` where given), handed to the `@tests` or `@names`
    // arm. Braces, not parentheses: the expansion must parse as items and as an expression.
    (@list [$($deep:ident)?] @$then:ident $($run:ident)?) => {
        $crate::corpus_tests! { @$then $($run)? :
            renames_across_dirs,
            swapped_names,
            dir_under_former_child,
            cycle_foo_bar,
            hardlinks,
            inode_reuse,
            type_changes,
            non_utf8_names,
            newline_names,
            $($deep,)?
            special_files,
            sparse_files,
            xattrs_acls,
            chattr_flags,
            special_mode_bits,
            ownership,
            mtime_ns,
            big_file_edits,
            truncation,
            capabilities,
            default_acls,
            chattr_hardlinks,
            unaligned_holes,
        }
    };
    (@tests $run:ident : $($name:ident,)*) => {
        $(#[test] fn $name() { $run(stringify!($name)); })*
        /// The corpus scenarios this file has a test for.
        const COVERED: &[&str] = &[$(stringify!($name)),*];
    };
    (@names : $($name:ident,)*) => {
        &[$(stringify!($name)),*]
    };
}

/// The scenario named `name`, if it is in the corpus.
pub fn scenario(name: &str) -> Option<Scenario> {
    corpus().into_iter().find(|s| s.name == name)
}

/// All corpus scenarios, in [`NAMES`] order.
pub fn corpus() -> Vec<Scenario> {
    vec![
        renames_across_dirs(),
        swapped_names(),
        dir_under_former_child(),
        cycle_foo_bar(),
        hardlinks(),
        inode_reuse(),
        type_changes(),
        non_utf8_names(),
        newline_names(),
        deep_tree(),
        special_files(),
        sparse_files(),
        xattrs_acls(),
        chattr_flags(),
        special_mode_bits(),
        ownership(),
        mtime_ns(),
        big_file_edits(),
        truncation(),
        implicit::capabilities(),
        implicit::default_acls(),
        implicit::chattr_hardlinks(),
        implicit::unaligned_holes(),
    ]
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn renames_across_dirs() -> Scenario {
    Scenario::new("renames_across_dirs")
        .step("two dirs with files and a subdir", |r: &Path| {
            mkdir_all(r.join("a/sub"))?;
            mkdir(r.join("b"))?;
            write_file(r.join("a/f1"), b"one")?;
            write_file(r.join("a/f2"), b"two")?;
            write_file(r.join("a/sub/g"), b"g")?;
            write_file(r.join("b/h"), b"h")
        })
        .step("move files and a dir across dirs", |r: &Path| {
            rename(r.join("a/f1"), r.join("b/f1"))?;
            rename(r.join("a/sub"), r.join("b/sub2"))?;
            rename(r.join("b/h"), r.join("a/h"))
        })
        .step("move back under new names, nest a dir in its sibling", |r: &Path| {
            rename(r.join("b/sub2"), r.join("a/sub3"))?;
            rename(r.join("b/f1"), r.join("a/sub3/f1"))?;
            rename(r.join("a"), r.join("b/a"))
        })
}

fn swapped_names() -> Scenario {
    Scenario::new("swapped_names")
        .step("files and dirs to swap", |r: &Path| {
            write_file(r.join("x"), b"content x")?;
            write_file(r.join("y"), b"content y, longer")?;
            mkdir(r.join("d1"))?;
            mkdir(r.join("d2"))?;
            write_file(r.join("d1/k"), b"1")?;
            write_file(r.join("d2/k"), b"2")?;
            write_file(r.join("z"), b"z file")?;
            mkdir(r.join("w"))?;
            write_file(r.join("w/inside"), b"w")
        })
        .step("swap two files, two dirs, a file with a dir", |r: &Path| {
            rename(r.join("x"), r.join("tmp"))?;
            rename(r.join("y"), r.join("x"))?;
            rename(r.join("tmp"), r.join("y"))?;
            exchange(r.join("d1"), r.join("d2"))?;
            exchange(r.join("z"), r.join("w"))
        })
        .step("rotate three names", |r: &Path| {
            // x -> y -> w -> x, where w is now a file and z a dir.
            rename(r.join("x"), r.join("t"))?;
            rename(r.join("w"), r.join("x"))?;
            rename(r.join("y"), r.join("w"))?;
            rename(r.join("t"), r.join("y"))
        })
}

fn dir_under_former_child() -> Scenario {
    Scenario::new("dir_under_former_child")
        .step("a/b/c/file", |r: &Path| {
            mkdir_all(r.join("a/b/c"))?;
            write_file(r.join("a/b/c/file"), b"file")?;
            write_file(r.join("a/other"), b"other")
        })
        .step("move a under its former child b", |r: &Path| {
            rename(r.join("a/b"), r.join("b"))?;
            rename(r.join("a"), r.join("b/a"))
        })
        .step("move b under its former child c", |r: &Path| {
            rename(r.join("b/c"), r.join("c"))?;
            rename(r.join("b"), r.join("c/b"))
        })
}

fn cycle_foo_bar() -> Scenario {
    Scenario::new("cycle_foo_bar")
        .step("foo/bar with content", |r: &Path| {
            mkdir_all(r.join("foo/bar/sub"))?;
            write_file(r.join("foo/bar/baz"), b"baz")?;
            write_file(r.join("foo/bar/sub/x"), b"x")
        })
        .step("foo/bar -> t, rmdir foo, t -> foo", |r: &Path| {
            rename(r.join("foo/bar"), r.join("t"))?;
            remove_dir(r.join("foo"))?;
            rename(r.join("t"), r.join("foo"))
        })
}

fn hardlinks() -> Scenario {
    Scenario::new("hardlinks")
        .step("files with links", |r: &Path| {
            mkdir(r.join("d"))?;
            write_file(r.join("f"), b"f data")?;
            hardlink(r.join("f"), r.join("g"))?;
            write_file(r.join("h"), b"h data")?;
            hardlink(r.join("h"), r.join("d/h2"))
        })
        .step("links added, removed, renamed", |r: &Path| {
            hardlink(r.join("f"), r.join("d/f3"))?;
            remove(r.join("g"))?;
            rename(r.join("d/h2"), r.join("d/h3"))?;
            hardlink(r.join("h"), r.join("h4"))
        })
        .step("original names dropped, new linked file", |r: &Path| {
            remove(r.join("f"))?;
            rename(r.join("d/f3"), r.join("f"))?;
            remove(r.join("h"))?;
            write_file(r.join("n"), b"n data")?;
            hardlink(r.join("n"), r.join("d/n2"))
        })
        .step("a link becomes a separate file with equal content", |r: &Path| {
            // h4 and d/h3 were one inode; now they are two with equal bytes.
            remove(r.join("h4"))?;
            write_file(r.join("h4"), b"h data")
        })
}

fn inode_reuse() -> Scenario {
    // btrfs allocates inode numbers from a per-subvolume counter that only
    // goes up while mounted, so a number is reused only after a remount
    // when the highest-numbered inodes were deleted; a step cannot force
    // it. What a step can do is delete many inodes and create as many new
    // ones (some under the old names, some of other types) in the same
    // generation, which is the situation where receivers that key on names
    // or on (ino) alone go wrong; ext4/xfs destinations do reuse numbers.
    Scenario::new("inode_reuse")
        .step("many files and a dir", |r: &Path| {
            for i in 0..40 {
                write_file(r.join(format!("f{i:02}")), format!("old {i}").as_bytes())?;
            }
            mkdir(r.join("d"))?;
            write_file(r.join("d/inner"), b"inner")
        })
        .step("delete all, create new ones in the same step", |r: &Path| {
            for i in 0..40 {
                remove(r.join(format!("f{i:02}")))?;
            }
            remove_tree(r.join("d"))?;
            for i in 0..40 {
                write_file(r.join(format!("n{i:02}")), format!("new {i}").as_bytes())?;
            }
            mkdir(r.join("f00"))?;
            write_file(r.join("f01"), b"recreated with other content")?;
            symlink(b"f01", r.join("f02"))?;
            write_file(r.join("d"), b"d is a file now")
        })
}

fn type_changes() -> Scenario {
    Scenario::new("type_changes")
        .step("one name of each type", |r: &Path| {
            write_file(r.join("n1"), b"file")?;
            mkdir(r.join("n2"))?;
            write_file(r.join("n2/child"), b"child")?;
            symlink(b"n1", r.join("n3"))?;
            mkfifo(r.join("n4"), 0o644)?;
            write_file(r.join("n5"), b"five")
        })
        .step("file->dir, dir->file, symlink->file, fifo->symlink", |r: &Path| {
            remove(r.join("n1"))?;
            mkdir(r.join("n1"))?;
            write_file(r.join("n1/inner"), b"inner")?;
            remove_tree(r.join("n2"))?;
            write_file(r.join("n2"), b"was a dir")?;
            remove(r.join("n3"))?;
            write_file(r.join("n3"), b"was a symlink")?;
            remove(r.join("n4"))?;
            symlink(b"n2", r.join("n4"))?;
            remove(r.join("n5"))?;
            make_socket(r.join("n5"))
        })
        .step("dir->symlink, file->dir holding the old name", |r: &Path| {
            remove_tree(r.join("n1"))?;
            symlink(b"n3", r.join("n1"))?;
            rename(r.join("n2"), r.join("tmp"))?;
            mkdir(r.join("n2"))?;
            rename(r.join("tmp"), r.join("n2/n2"))
        })
}

fn non_utf8_names() -> Scenario {
    Scenario::new("non_utf8_names")
        .step("names and a target that are not UTF-8", |r: &Path| {
            write_file(join(r, b"\xff\xfe"), b"ff fe")?;
            mkdir(join(r, b"caf\xe9"))?;
            write_file(join(r, b"caf\xe9/\x80x"), b"inside")?;
            symlink(b"\xfe\xff/target", join(r, b"l\xff"))
        })
        .step("rename them around", |r: &Path| {
            rename(join(r, b"\xff\xfe"), join(r, b"caf\xe9/\xff\xfe\xfd"))?;
            rename(join(r, b"caf\xe9"), join(r, b"\xc3\x28"))?;
            write_file(join(r, b"\x01\x02\x7f"), b"control bytes")
        })
}

fn newline_names() -> Scenario {
    Scenario::new("newline_names")
        .step("names with newlines", |r: &Path| {
            write_file(r.join("a\nb"), b"a newline b")?;
            mkdir(r.join("dir\nname"))?;
            write_file(r.join("dir\nname/x\n"), b"x")?;
            write_file(r.join("\n"), b"just a newline")?;
            symlink(b"a\nb", r.join("link\n"))
        })
        .step("rename into and out of them", |r: &Path| {
            rename(r.join("a\nb"), r.join("dir\nname/\n\n"))?;
            write_file(r.join("a\nb"), b"new a newline b")?;
            rename(r.join("dir\nname"), r.join("\ndir"))
        })
}

/// 18 levels of 250-byte names: 4518 bytes, deeper than PATH_MAX (4096).
pub const DEEP_DEPTH: usize = 18;
pub const DEEP_NAME_LEN: usize = 250;

fn deep_tree() -> Scenario {
    // btrfs send refuses paths longer than PATH_MAX (ENAMETOOLONG), so this
    // scenario cannot go through btrfs send/receive; it is here for
    // receivers that walk with directory fds.
    Scenario::new("deep_tree")
        .step("a chain deeper than PATH_MAX", |r: &Path| {
            let names = deep_names(DEEP_DEPTH, DEEP_NAME_LEN);
            let mid = open_deep_dir(r, &names[..DEEP_DEPTH / 2], true)?;
            write_file_at(&mid, b"middle", b"in the middle")?;
            let leaf = open_deep_dir(r, &names, true)?;
            write_file_at(&leaf, b"leaf", b"at the bottom")
        })
        .step("edit the leaf, rename a middle dir", |r: &Path| {
            let names = deep_names(DEEP_DEPTH, DEEP_NAME_LEN);
            let leaf = open_deep_dir(r, &names, false)?;
            write_file_at(&leaf, b"leaf", b"at the bottom, edited")?;
            write_file_at(&leaf, b"leaf2", b"new at the bottom")?;
            let parent = open_deep_dir(r, &names[..DEEP_DEPTH / 2 - 1], false)?;
            let mut renamed = names[DEEP_DEPTH / 2 - 1].clone();
            renamed[0] = b'r';
            rename_at(&parent, &names[DEEP_DEPTH / 2 - 1], &renamed)
        })
        .step("edit the leaf below the renamed dir", |r: &Path| {
            let mut names = deep_names(DEEP_DEPTH, DEEP_NAME_LEN);
            names[DEEP_DEPTH / 2 - 1][0] = b'r';
            let leaf = open_deep_dir(r, &names, false)?;
            // Same length, other bytes: a pure content change.
            write_file_at(&leaf, b"leaf", b"AT THE BOTTOM, EDITED")
        })
}

fn special_files() -> Scenario {
    Scenario::new("special_files")
        .step("fifo, socket, char and block devices", |r: &Path| {
            mkfifo(r.join("fifo"), 0o644)?;
            make_socket(r.join("sock"))?;
            mknod_char(r.join("chr"), 10, 200, 0o600)?;
            mknod_block(r.join("blk"), 7, 200, 0o660)
        })
        .step("new rdev, chmod, chown, rename", |r: &Path| {
            chmod(r.join("fifo"), 0o600)?;
            chown(r.join("sock"), 1000, 1000)?;
            remove(r.join("chr"))?;
            mknod_char(r.join("chr"), 10, 201, 0o600)?;
            rename(r.join("blk"), r.join("blk2"))?;
            mknod_block(r.join("blk3"), 8, 16, 0o640)
        })
        .step("socket becomes fifo, device mtimes", |r: &Path| {
            remove(r.join("sock"))?;
            mkfifo(r.join("sock"), 0o640)?;
            set_mtime(r.join("chr"), 1_234_567_890, 987_654_321)?;
            set_mtime(r.join("fifo"), 1_111_111_111, 1)
        })
}

fn sparse_files() -> Scenario {
    Scenario::new("sparse_files")
        .step("holes at start, middle, end; all hole; dense", |r: &Path| {
            let d = pattern(64 * KIB as usize, 1);
            make_sparse(r.join("hole_start"), MIB, &[(MIB - 4 * KIB, &d[..4096])])?;
            make_sparse(r.join("hole_middle"), MIB, &[(0, &d[..]), (MIB - 64 * KIB, &d[..])])?;
            make_sparse(r.join("hole_end"), MIB, &[(0, &d[..4096])])?;
            make_sparse(r.join("all_hole"), 4 * MIB, &[])?;
            write_file(r.join("dense"), &pattern(256 * KIB as usize, 2))
        })
        .step("punch a hole, fill a hole, extend with a hole", |r: &Path| {
            punch_hole(r.join("dense"), 64 * KIB, 64 * KIB)?;
            write_at(r.join("hole_middle"), 512 * KIB, &pattern(8 * KIB as usize, 3))?;
            truncate(r.join("hole_end"), 2 * MIB)?;
            write_at(r.join("all_hole"), 2 * MIB, b"x")
        })
        .step("punch the start and the end", |r: &Path| {
            punch_hole(r.join("hole_start"), MIB - 4 * KIB, 4 * KIB)?;
            punch_hole(r.join("dense"), 0, 4 * KIB)?;
            punch_hole(r.join("dense"), 252 * KIB, 4 * KIB)
        })
}

fn xattrs_acls() -> Scenario {
    Scenario::new("xattrs_acls")
        .step("xattrs in each namespace, access and default ACLs", |r: &Path| {
            write_file(r.join("f"), b"f")?;
            mkdir(r.join("d"))?;
            symlink(b"f", r.join("l"))?;
            set_xattr(r.join("f"), "user.a", b"1")?;
            set_xattr(r.join("f"), "user.empty", b"")?;
            set_xattr(r.join("f"), "user.binary", b"\x00\xff\n\x01")?;
            set_xattr(r.join("f"), "user.long", &pattern(3000, 4))?;
            set_xattr(r.join("f"), "trusted.t", b"secret")?;
            set_xattr(r.join("f"), "security.capability", &cap_net_bind_service())?;
            set_xattr(r.join("d"), "user.d", b"dir")?;
            set_xattr(r.join("l"), "trusted.on_symlink", b"yes")?;
            set_acl(r.join("f"), "u:1234:rw,g:55:r")?;
            set_default_acl(r.join("d"), "u:1234:rwx,g:55:rx")?;
            // Created after the default ACL: inherits it as access ACL.
            write_file(r.join("d/inherits"), b"i")
        })
        .step("values changed, some removed, some added", |r: &Path| {
            set_xattr(r.join("f"), "user.a", b"2")?;
            remove_xattr(r.join("f"), "user.empty")?;
            set_xattr(r.join("f"), "user.new", b"new")?;
            set_xattr(r.join("f"), "trusted.t", b"changed")?;
            remove_xattr(r.join("f"), "security.capability")?;
            set_acl(r.join("f"), "u:1234:r")?;
            remove_xattr(r.join("d"), "system.posix_acl_default")?;
            set_acl(r.join("d"), "u:4321:rx")
        })
        .step("all ACLs and xattrs removed", |r: &Path| {
            remove_acls(r.join("f"))?;
            remove_acls(r.join("d"))?;
            for n in ["user.a", "user.binary", "user.long", "user.new", "trusted.t"] {
                remove_xattr(r.join("f"), n)?;
            }
            remove_xattr(r.join("d"), "user.d")?;
            remove_xattr(r.join("l"), "trusted.on_symlink")
        })
}

fn chattr_flags() -> Scenario {
    // btrfs send/receive does not carry inode flags: see the sanity test.
    Scenario::new("chattr_flags")
        .step("plain files and a dir", |r: &Path| {
            write_file(r.join("a"), b"append only soon")?;
            write_file(r.join("b"), b"immutable soon")?;
            write_file(r.join("c"), b"nodump soon")?;
            mkdir(r.join("d"))?;
            write_file(r.join("d/in"), b"in")
        })
        .step("+d, +a, +i on files, +i on a dir (set last)", |r: &Path| {
            add_flags(r.join("c"), IFlags::NODUMP | IFlags::NOATIME)?;
            add_flags(r.join("a"), IFlags::APPEND)?;
            add_flags(r.join("b"), IFlags::IMMUTABLE)?;
            add_flags(r.join("d"), IFlags::IMMUTABLE)
        })
        .step("flags removed, files changed, one flag kept", |r: &Path| {
            remove_flags(r.join("b"), IFlags::IMMUTABLE)?;
            write_file(r.join("b"), b"changed after -i")?;
            remove_flags(r.join("a"), IFlags::APPEND)?;
            append(r.join("a"), b", appended after -a")?;
            remove_flags(r.join("d"), IFlags::IMMUTABLE)?;
            write_file(r.join("d/new"), b"new")?;
            add_flags(r.join("a"), IFlags::SYNC)
        })
}

fn special_mode_bits() -> Scenario {
    Scenario::new("special_mode_bits")
        .step("setuid, setgid, sticky on files and dirs", |r: &Path| {
            create_with_mode(r.join("su"), 0o4755, b"su")?;
            create_with_mode(r.join("sg"), 0o2755, b"sg")?;
            create_with_mode(r.join("all"), 0o7777, b"all")?;
            create_with_mode(r.join("none"), 0o0000, b"none")?;
            mkdir(r.join("sticky"))?;
            chmod(r.join("sticky"), 0o1777)?;
            mkdir(r.join("sgdir"))?;
            chmod(r.join("sgdir"), 0o2775)
        })
        .step("only special bits change", |r: &Path| {
            chmod(r.join("su"), 0o0755)?;
            chmod(r.join("sg"), 0o4755)?;
            chmod(r.join("all"), 0o6777)?;
            chmod(r.join("sticky"), 0o0777)?;
            chmod(r.join("sgdir"), 0o0775)
        })
}

fn ownership() -> Scenario {
    Scenario::new("ownership")
        .step("numeric owners on all kinds, a setuid file, the root", |r: &Path| {
            write_file(r.join("u1000"), b"a")?;
            chown(r.join("u1000"), 1000, 1000)?;
            write_file(r.join("g5000"), b"b")?;
            chown(r.join("g5000"), 0, 5000)?;
            mkdir(r.join("d"))?;
            chown(r.join("d"), 1234, 4321)?;
            symlink(b"u1000", r.join("l"))?;
            chown(r.join("l"), 77, 88)?;
            mkfifo(r.join("p"), 0o644)?;
            chown(r.join("p"), 5, 6)?;
            write_file(r.join("suid"), b"suid")?;
            chown(r.join("suid"), 1000, 100)?;
            // chown clears setuid, so the bit goes on after it.
            chmod(r.join("suid"), 0o4755)?;
            chown(r, 4242, 4343)?;
            chmod(r, 0o750)
        })
        .step("uid only, gid only, both; setuid file re-owned", |r: &Path| {
            chown(r.join("u1000"), 1001, 1000)?;
            chown(r.join("g5000"), 0, 5001)?;
            chown(r.join("d"), 0, 0)?;
            chown(r.join("l"), 78, 89)?;
            chown(r.join("suid"), 2000, 100)?;
            chmod(r.join("suid"), 0o4755)?;
            chown(r, 0, 0)?;
            chmod(r, 0o755)
        })
}

fn mtime_ns() -> Scenario {
    Scenario::new("mtime_ns")
        .step("exact times on files, dirs, a symlink and the root", |r: &Path| {
            mkdir(r.join("d"))?;
            write_file(r.join("d/f"), b"f")?;
            symlink(b"d/f", r.join("l"))?;
            set_mtime(r.join("d/f"), 1_000_000_000, 123_456_789)?;
            set_mtime(r.join("l"), 1_500_000_000, 1)?;
            set_mtime(r.join("d"), 1_200_000_000, 999_999_999)?;
            set_mtime(r, 1_300_000_000, 500_000_000)
        })
        .step("only nanoseconds change", |r: &Path| {
            set_mtime(r.join("d/f"), 1_000_000_000, 123_456_790)?;
            set_mtime(r.join("l"), 1_500_000_000, 2)?;
            set_mtime(r.join("d"), 1_200_000_000, 999_999_998)?;
            set_mtime(r, 1_300_000_000, 500_000_001)
        })
        .step("content changes, dir mtime set before the parent's", |r: &Path| {
            write_file(r.join("d/g"), b"g")?;
            set_mtime(r.join("d/g"), 0, 0)?;
            set_mtime(r.join("d"), 2_000_000_000, 42)
        })
}

fn big_file_edits() -> Scenario {
    Scenario::new("big_file_edits")
        .step("a 4 MiB file", |r: &Path| write_file(r.join("big"), &pattern(4 * MIB as usize, 5)))
        .step("small in-place writes and an append", |r: &Path| {
            let big = r.join("big");
            write_at(&big, 0, b"HEAD")?;
            write_at(&big, MIB + 3, b"unaligned")?;
            write_at(&big, 4 * MIB - 1, b"Z")?;
            append(&big, &pattern(10 * KIB as usize, 6))
        })
        .step("one byte in the middle, one appended", |r: &Path| {
            let big = r.join("big");
            write_at(&big, 2 * MIB + 1, b"!")?;
            append(&big, b"+")
        })
}

fn truncation() -> Scenario {
    Scenario::new("truncation")
        .step("files of various sizes", |r: &Path| {
            write_file(r.join("t1"), &pattern(100 * KIB as usize, 7))?;
            write_file(r.join("t2"), &pattern(100 * KIB as usize, 8))?;
            write_file(r.join("t3"), &pattern(5000, 9))?;
            write_file(r.join("t4"), b"")
        })
        .step("shrink unaligned, to zero, extend, fill empty", |r: &Path| {
            truncate(r.join("t1"), 50_000)?;
            truncate(r.join("t2"), 0)?;
            truncate(r.join("t3"), MIB)?;
            write_file(r.join("t4"), b"no longer empty")
        })
        .step("shrink then write past the end", |r: &Path| {
            truncate(r.join("t1"), 4096)?;
            write_at(r.join("t1"), 8192, b"after a gap")
        })
}
