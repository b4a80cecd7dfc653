//! Scenarios of what the kernel does by itself, beside what a step asks for: it drops
//! `security.capability` (and setuid/setgid) at a chown, a data write or a truncate; it gives an
//! object made inside a directory with a default ACL an access ACL (but not one moved or linked
//! in); inode flags belong to the inode, so a flag set through one name holds for all its names;
//! and holes exist only in whole blocks, so a punch that ends at an unaligned end of file frees
//! the last partial block only when it covers all of it.
//!
//! They are the classes of issue 19's defects 9 to 12 (each found by a randomized chain and
//! fixed for one instance): a receiver replays such a change with records whose side effects
//! must land exactly where the kernel put them on the sending side. Each step checks that the
//! kernel really did what the scenario relies on (a dropped capability is gone), so a kernel
//! that stops doing it fails the step instead of quietly testing nothing.

use crate::fsops::*;
use crate::scenario::Scenario;
use crate::xattr_values::{cap_net_bind_service, cap_net_raw};
use rustix::fs::IFlags;
use std::io;
use std::path::Path;

const CAP: &str = "security.capability";

/// Fails the step unless the kernel dropped `path`'s capability.
fn dropped(path: impl AsRef<Path>) -> io::Result<()> {
    if has_xattr(path.as_ref(), CAP)? {
        return Err(io::Error::other(format!(
            "the kernel kept {CAP} of {}: the scenario relies on it being dropped",
            path.as_ref().display()
        )));
    }
    Ok(())
}

/// Capabilities set, dropped by the kernel at a chown, a data write and a truncate (also through
/// another name of the inode), set again, and changed in the same step as the change that drops
/// them (so origin and target hold the same value and only the receiver's own chown or write
/// drops it).
pub(super) fn capabilities() -> Scenario {
    Scenario::new("capabilities")
        .step("capabilities on files, one with three names, one setuid", |r: &Path| {
            mkdir(r.join("d"))?;
            for n in ["by_chown", "by_write", "by_truncate", "kept", "linked", "suid"] {
                write_file(r.join(n), &pattern(5000, n.len() as u64))?;
            }
            hardlink(r.join("linked"), r.join("d/linked2"))?;
            hardlink(r.join("linked"), r.join("d/linked3"))?;
            chmod(r.join("suid"), 0o4755)?;
            for n in ["by_chown", "by_write", "by_truncate", "kept", "linked", "suid"] {
                set_capability(r.join(n), &cap_net_bind_service())?;
            }
            Ok(())
        })
        .step("the kernel drops them: chown, write, truncate, a write through a link", |r| {
            chown(r.join("by_chown"), 1000, 1000)?;
            dropped(r.join("by_chown"))?;
            write_at(r.join("by_write"), 10, b"written")?;
            dropped(r.join("by_write"))?;
            truncate(r.join("by_truncate"), 3001)?;
            dropped(r.join("by_truncate"))?;
            append(r.join("d/linked3"), b"through another name")?;
            dropped(r.join("linked"))?;
            chown(r.join("suid"), 1000, 0)?;
            dropped(r.join("suid"))
        })
        .step("set again, one with another value, one through another name", |r| {
            set_capability(r.join("by_chown"), &cap_net_bind_service())?;
            set_capability(r.join("by_write"), &cap_net_raw())?;
            set_capability(r.join("by_truncate"), &cap_net_bind_service())?;
            set_capability(r.join("d/linked2"), &cap_net_bind_service())?;
            // Setuid again after the chown cleared it, then the capability.
            chmod(r.join("suid"), 0o4755)?;
            set_capability(r.join("suid"), &cap_net_bind_service())
        })
        .step("dropped and set again in one step: the value is as before", |r| {
            chown(r.join("by_chown"), 2000, 2000)?;
            set_capability(r.join("by_chown"), &cap_net_bind_service())?;
            write_at(r.join("by_write"), 4000, b"more")?;
            set_capability(r.join("by_write"), &cap_net_raw())?;
            truncate(r.join("by_truncate"), 9000)?;
            set_capability(r.join("by_truncate"), &cap_net_bind_service())?;
            write_at(r.join("d/linked2"), 0, b"x")?;
            set_capability(r.join("d/linked3"), &cap_net_bind_service())?;
            chown(r.join("suid"), 0, 0)?;
            chmod(r.join("suid"), 0o4755)?;
            set_capability(r.join("suid"), &cap_net_bind_service())
        })
        .step("a name of the capable inode removed, another renamed, one written", |r| {
            remove(r.join("linked"))?;
            rename(r.join("d/linked2"), r.join("linked"))?;
            write_at(r.join("kept"), 1, b"k")?;
            dropped(r.join("kept"))
        })
}

/// Default ACLs: objects of every kind made inside a directory with a default ACL (they inherit
/// it) and moved or linked into one (they do not); a directory with a default ACL moved into
/// another with a different one; a default ACL changed and removed with objects inside.
pub(super) fn default_acls() -> Scenario {
    Scenario::new("default_acls")
        .step("two dirs with different default ACLs, objects inside and outside", |r: &Path| {
            mkdir(r.join("d"))?;
            mkdir(r.join("e"))?;
            mkdir(r.join("plain"))?;
            set_default_acl(r.join("d"), "u:1000:rwx")?;
            set_default_acl(r.join("e"), "g:55:rx,u:77:r")?;
            // Made inside: inherited.
            write_file(r.join("d/made"), b"made in d")?;
            mkfifo(r.join("d/fifo_made"), 0o644)?;
            symlink(b"made", r.join("d/link_made"))?;
            mkdir(r.join("d/sub_made"))?;
            write_file(r.join("d/sub_made/deeper"), b"two levels of inheritance")?;
            write_file(r.join("e/in_e"), b"made in e")?;
            // Made outside, to be moved in later.
            write_file(r.join("f"), b"x")?;
            mkfifo(r.join("p"), 0o600)?;
            symlink(b"f", r.join("l"))?;
            mkdir(r.join("sub"))?;
            write_file(r.join("sub/inner"), b"inner")?;
            write_file(r.join("linked"), b"a file with a second name to come")
        })
        .step("moved in and made in, of every kind; e moved into d", |r| {
            for n in ["f", "p", "l", "sub"] {
                rename(r.join(n), r.join("d").join(n))?;
            }
            hardlink(r.join("linked"), r.join("d/linked2"))?;
            write_file(r.join("d/made2"), b"made in d later")?;
            mkfifo(r.join("d/fifo_made2"), 0o640)?;
            symlink(b"made2", r.join("d/link_made2"))?;
            mkdir(r.join("d/sub_made2"))?;
            make_socket(r.join("d/sock_made2"))?;
            rename(r.join("e"), r.join("d/e"))?;
            write_file(r.join("d/e/made_in_moved_e"), b"inherits e's default, not d's")?;
            rename(r.join("d/made"), r.join("plain/made"))
        })
        .step("d's default changed, e's removed; more made and moved", |r| {
            set_default_acl(r.join("d"), "u:2000:r")?;
            remove_default_acl(r.join("d/e"))?;
            write_file(r.join("d/made3"), b"with the changed default")?;
            write_file(r.join("d/e/made_after_removal"), b"no ACL")?;
            rename(r.join("d/sub_made"), r.join("d/e/sub_made"))?;
            rename(r.join("plain"), r.join("d/sub/plain"))?;
            // A name swap between the two directories.
            exchange(r.join("d/f"), r.join("d/e/in_e"))
        })
        .step("d's default removed; a dir with a default moved out to the root", |r| {
            remove_default_acl(r.join("d"))?;
            write_file(r.join("d/made4"), b"no default any more")?;
            rename(r.join("d/sub_made2"), r.join("sub_made2"))?;
            write_file(r.join("sub_made2/inside"), b"inherits sub_made2's own default")
        })
}

/// chattr flags on inodes with several names: set through one name after others are removed,
/// renamed over, or moved; on directories; lifted before the next change to the object (as a
/// user must) and set again through another name.
pub(super) fn chattr_hardlinks() -> Scenario {
    Scenario::new("chattr_hardlinks")
        .step("files with two and three names, directories", |r: &Path| {
            mkdir(r.join("d"))?;
            mkdir(r.join("dd"))?;
            mkdir(r.join("m"))?;
            write_file(r.join("d/f"), b"f, soon immutable as g")?;
            hardlink(r.join("d/f"), r.join("g"))?;
            write_file(r.join("h"), b"h, three names")?;
            hardlink(r.join("h"), r.join("dd/h2"))?;
            hardlink(r.join("h"), r.join("h3"))?;
            write_file(r.join("x"), b"x, to be renamed over")?;
            hardlink(r.join("x"), r.join("x2"))?;
            write_file(r.join("y"), b"y replaces x")?;
            write_file(r.join("k"), b"k, moved")?;
            hardlink(r.join("k"), r.join("m/k2"))?;
            write_file(r.join("dd/plain"), b"in dd")
        })
        .step("rm -r d, chattr +i g; rename onto x, +a x; move k, +i; +i on dd", |r| {
            remove_tree(r.join("d"))?;
            add_flags(r.join("g"), IFlags::IMMUTABLE)?;
            remove(r.join("dd/h2"))?;
            add_flags(r.join("h3"), IFlags::APPEND)?;
            rename(r.join("y"), r.join("x"))?;
            add_flags(r.join("x"), IFlags::APPEND)?;
            rename(r.join("k"), r.join("m/k_moved"))?;
            add_flags(r.join("m/k2"), IFlags::IMMUTABLE)?;
            add_flags(r.join("dd"), IFlags::IMMUTABLE)
        })
        .step("flags lifted, names changed, set again through other names", |r| {
            remove_flags(r.join("g"), IFlags::IMMUTABLE)?;
            hardlink(r.join("g"), r.join("g2"))?;
            add_flags(r.join("g2"), IFlags::IMMUTABLE | IFlags::NODUMP)?;
            remove_flags(r.join("h"), IFlags::APPEND)?;
            rename(r.join("h"), r.join("m/h_moved"))?;
            append(r.join("h3"), b", appended")?;
            add_flags(r.join("m/h_moved"), IFlags::APPEND)?;
            remove_flags(r.join("x"), IFlags::APPEND)?;
            rename(r.join("x2"), r.join("x"))?;
            add_flags(r.join("x"), IFlags::NOATIME)?;
            remove_flags(r.join("m/k_moved"), IFlags::IMMUTABLE)?;
            remove(r.join("m/k2"))?;
            remove_flags(r.join("dd"), IFlags::IMMUTABLE)?;
            rename(r.join("dd/plain"), r.join("plain"))?;
            hardlink(r.join("plain"), r.join("dd/plain_again"))?;
            add_flags(r.join("dd"), IFlags::APPEND)?;
            add_flags(r.join("m"), IFlags::IMMUTABLE)
        })
        .step("flags lifted, names of once-locked inodes removed, all off", |r| {
            remove_flags(r.join("m"), IFlags::IMMUTABLE)?;
            remove_flags(r.join("g"), IFlags::IMMUTABLE)?;
            remove(r.join("g"))?;
            remove_flags(r.join("dd"), IFlags::APPEND)?;
            remove_flags(r.join("m/h_moved"), IFlags::APPEND)?;
            remove(r.join("h3"))?;
            remove_flags(r.join("x"), IFlags::NOATIME)
        })
}

const KIB: u64 = 1024;

/// Holes at unaligned ends of files of various sizes: punched to (and past) the end, left by a
/// truncate that extends, a sparse tail written past a hole, on a file with two names too.
pub(super) fn unaligned_holes() -> Scenario {
    // Sizes around block boundaries: one block and a bit, two blocks less a bit, three and one
    // byte, not a block multiple at all, a MiB and some.
    const SIZES: [(&str, u64); 5] = [
        ("s4111", 4111),
        ("s7907", 7907),
        ("s12289", 12289),
        ("s100000", 100_000),
        ("s1m", 1024 * KIB + 123),
    ];
    Scenario::new("unaligned_holes")
        .step("dense files of unaligned sizes, one with two names", |r: &Path| {
            for (i, (n, size)) in SIZES.iter().enumerate() {
                write_file(r.join(n), &pattern(*size as usize, 40 + i as u64))?;
            }
            mkdir(r.join("d"))?;
            write_file(r.join("linked"), &pattern(20_005, 50))?;
            hardlink(r.join("linked"), r.join("d/linked2"))
        })
        .step("punch to and past the end, from aligned and unaligned offsets", |r| {
            // Issue 19's instance: 0+7907 on a 4,111-byte file.
            punch_hole(r.join("s4111"), 0, 7907)?;
            punch_hole(r.join("s7907"), 4096, 3811)?;
            punch_hole(r.join("s12289"), 5000, 7289)?;
            punch_hole(r.join("s100000"), 65_537, 40_000)?;
            punch_hole(r.join("s1m"), 1000, 1024 * KIB)?;
            punch_hole(r.join("d/linked2"), 8191, 12_000)
        })
        .step("extend with a hole, write a sparse tail, shrink to an unaligned size", |r| {
            truncate(r.join("s4111"), 300_001)?;
            truncate(r.join("s7907"), 4097)?;
            write_at(r.join("s12289"), 70_000, b"sparse tail")?;
            truncate(r.join("s100000"), 50_001)?;
            write_at(r.join("linked"), 40_000, b"after a hole, through the other name")?;
            punch_hole(r.join("s1m"), 1024 * KIB, 123)
        })
        .step("fill some holes, punch the middle unaligned, end inside a block", |r| {
            write_at(r.join("s4111"), 299_990, b"end")?;
            write_at(r.join("s1m"), 5000, &pattern(10_000, 60))?;
            punch_hole(r.join("s12289"), 3, 4093)?;
            truncate(r.join("d/linked2"), 12_289)?;
            punch_hole(r.join("linked"), 4096, 8193)
        })
}
