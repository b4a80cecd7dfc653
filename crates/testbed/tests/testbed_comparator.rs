//! The comparator catches each kind of difference: two identical trees, one
//! property changed on one side, exactly that property reported.
//!
//! Properties any file system holds run in a plain temp dir; those needing
//! root or a real file system (owners, devices, trusted/security xattrs,
//! ACLs, chattr flags, user xattrs) run on an ext4 loop mount behind the
//! privilege gate.

use anysend_testbed::compare::{compare, CompareOptions, Property, Report};
use anysend_testbed::fsops::*;
use anysend_testbed::loopfs::{DestFs, DestKind};
use anysend_testbed::privilege::{require_privileged_with, REQUIRED_TOOLS};
use anysend_testbed::xattr_values::cap_net_bind_service;
use rustix::fs::IFlags;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

enum Guard {
    Tmp(#[allow(dead_code)] tempfile::TempDir),
    Ext4(#[allow(dead_code)] DestFs),
}

/// Two sibling trees `a` and `b` under one root.
struct Bed {
    _guard: Guard,
    root: PathBuf,
}

const T0: i64 = 1_600_000_000;

impl Bed {
    fn plain() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Bed::init(Guard::Tmp(dir), root)
    }

    /// An ext4 loop mount (user_xattr,acl), or None when gated off.
    fn ext4(test: &str) -> Option<Bed> {
        let mut tools = REQUIRED_TOOLS.to_vec();
        tools.push("setfacl");
        require_privileged_with(test, &tools)?;
        let fs = DestFs::new(DestKind::Ext4);
        let root = fs.path().to_path_buf();
        Some(Bed::init(Guard::Ext4(fs), root))
    }

    fn init(guard: Guard, root: PathBuf) -> Bed {
        mkdir(root.join("a")).unwrap();
        mkdir(root.join("b")).unwrap();
        Bed { _guard: guard, root }
    }

    fn a(&self) -> PathBuf {
        self.root.join("a")
    }

    fn b(&self) -> PathBuf {
        self.root.join("b")
    }

    /// Runs `f` on both trees.
    fn build(&self, f: impl Fn(&Path) -> std::io::Result<()>) -> &Self {
        f(&self.a()).unwrap();
        f(&self.b()).unwrap();
        self
    }

    /// Same mtime on every entry of both trees, so building them at
    /// different instants does not count as a difference.
    fn freeze(&self) -> &Self {
        freeze(&self.a());
        freeze(&self.b());
        self
    }

    fn compare(&self, opts: &CompareOptions) -> Report {
        compare(&self.a(), &self.b(), opts).unwrap()
    }

    /// Asserts exactly `p` is reported (at least once), nothing else.
    fn expect_only(&self, p: Property) -> Report {
        let r = self.compare(&CompareOptions::new());
        assert_eq!(r.properties(), BTreeSet::from([p]), "\n{r}");
        r
    }
}

fn freeze(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            freeze(&e.path());
        } else {
            set_mtime(e.path(), T0, 0).unwrap();
        }
    }
    set_mtime(dir, T0, 0).unwrap();
}

fn paths(r: &Report) -> Vec<Vec<u8>> {
    r.differences.iter().map(|d| d.path.clone()).collect()
}

#[test]
fn identical_trees_compare_equal() {
    let bed = Bed::plain();
    bed.build(|r| {
        mkdir(r.join("d"))?;
        write_file(r.join("d/f"), b"data")?;
        make_sparse(r.join("sparse"), 1 << 20, &[(8192, b"x")])?;
        symlink(b"d/f", r.join("l"))?;
        hardlink(r.join("d/f"), r.join("link"))?;
        mkfifo(r.join("p"), 0o600)?;
        make_socket(r.join("s"))
    })
    .freeze();
    let r = bed.compare(&CompareOptions::new());
    assert!(r.is_equal(), "{r}");
}

#[test]
fn missing_name() {
    let bed = Bed::plain();
    bed.build(|r| write_file(r.join("f"), b"f")).freeze();
    remove(bed.b().join("f")).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Missing);
    assert_eq!(paths(&r), [b"f".to_vec()]);
}

#[test]
fn missing_dir_reported_once_not_its_contents() {
    let bed = Bed::plain();
    bed.build(|r| {
        mkdir_all(r.join("d/e"))?;
        write_file(r.join("d/e/f"), b"f")
    });
    remove_tree(bed.b().join("d")).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Missing);
    assert_eq!(paths(&r), [b"d".to_vec()]);
}

#[test]
fn extra_name() {
    let bed = Bed::plain();
    bed.build(|r| mkdir(r.join("d")));
    write_file(bed.b().join("d/new"), b"n").unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Extra);
    assert_eq!(paths(&r), [b"d/new".to_vec()]);
}

#[test]
fn file_type() {
    let bed = Bed::plain();
    bed.build(|r| write_file(r.join("x"), b"x"));
    remove(bed.b().join("x")).unwrap();
    mkdir(bed.b().join("x")).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::FileType);
    assert_eq!((r.differences[0].a.as_str(), r.differences[0].b.as_str()), ("file", "dir"));
}

#[test]
fn file_type_symlink_vs_file() {
    let bed = Bed::plain();
    bed.build(|r| write_file(r.join("x"), b"x"));
    remove(bed.b().join("x")).unwrap();
    symlink(b"x", bed.b().join("x")).unwrap();
    bed.freeze();
    bed.expect_only(Property::FileType);
}

#[test]
fn content() {
    let bed = Bed::plain();
    bed.build(|r| write_file(r.join("f"), &pattern(3 << 20, 1)));
    write_at(bed.b().join("f"), (2 << 20) + 5, b"!").unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Content);
    assert!(r.differences[0].a.starts_with("byte 2097157 "), "{r}");
}

#[test]
fn holes() {
    // Same bytes (all zeros in the middle) but a hole on one side only.
    let bed = Bed::plain();
    bed.build(|r| make_sparse(r.join("f"), 64 << 10, &[(0, b"head"), (60 << 10, b"tail")]));
    write_at(bed.b().join("f"), 16 << 10, &[0u8; 8192]).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Holes);
    assert_eq!(paths(&r), [b"f".to_vec()]);
}

#[test]
fn size() {
    // Extending with a hole adds no data and changes no common byte.
    let bed = Bed::plain();
    bed.build(|r| write_file(r.join("f"), &[7u8; 4096]));
    truncate(bed.b().join("f"), 8192).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Size);
    assert_eq!((r.differences[0].a.as_str(), r.differences[0].b.as_str()), ("4096", "8192"));
}

#[test]
fn mode() {
    let bed = Bed::plain();
    bed.build(|r| create_with_mode(r.join("f"), 0o644, b"f"));
    chmod(bed.b().join("f"), 0o640).unwrap();
    bed.freeze();
    bed.expect_only(Property::Mode);
}

#[test]
fn mode_setuid_only() {
    let bed = Bed::plain();
    bed.build(|r| create_with_mode(r.join("f"), 0o755, b"f"));
    chmod(bed.b().join("f"), 0o4755).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Mode);
    assert_eq!((r.differences[0].a.as_str(), r.differences[0].b.as_str()), ("0755", "4755"));
}

#[test]
fn mode_sticky_dir_only() {
    let bed = Bed::plain();
    bed.build(|r| {
        mkdir(r.join("d"))?;
        chmod(r.join("d"), 0o777)
    });
    chmod(bed.b().join("d"), 0o1777).unwrap();
    bed.freeze();
    bed.expect_only(Property::Mode);
}

#[test]
fn mtime_nanosecond_only() {
    let bed = Bed::plain();
    bed.build(|r| write_file(r.join("f"), b"f")).freeze();
    set_mtime(bed.b().join("f"), T0, 1).unwrap();
    let r = bed.expect_only(Property::Mtime);
    assert_eq!(r.differences[0].b, format!("{T0}.000000001"));
}

#[test]
fn dir_mtime() {
    let bed = Bed::plain();
    bed.build(|r| mkdir(r.join("d"))).freeze();
    set_mtime(bed.b().join("d"), T0 + 1, 0).unwrap();
    let r = bed.expect_only(Property::Mtime);
    assert_eq!(paths(&r), [b"d".to_vec()]);
}

#[test]
fn root_mtime() {
    let bed = Bed::plain();
    bed.build(|r| write_file(r.join("f"), b"f")).freeze();
    set_mtime(bed.b(), T0, 7).unwrap();
    let r = bed.expect_only(Property::Mtime);
    assert_eq!(paths(&r), [Vec::<u8>::new()]);
    assert!(r.to_string().contains(".: mtime"), "{r}");
}

#[test]
fn symlink_mtime() {
    let bed = Bed::plain();
    bed.build(|r| symlink(b"nowhere", r.join("l"))).freeze();
    set_mtime(bed.b().join("l"), T0, 9).unwrap();
    bed.expect_only(Property::Mtime);
}

#[test]
fn symlink_target() {
    let bed = Bed::plain();
    bed.build(|r| symlink(b"target\xff", r.join("l")));
    remove(bed.b().join("l")).unwrap();
    symlink(b"target\xfe", bed.b().join("l")).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::SymlinkTarget);
    assert_eq!(r.differences[0].a, "target\\xff");
}

#[test]
fn hardlink_structure() {
    let bed = Bed::plain();
    write_file(bed.a().join("f"), b"same").unwrap();
    hardlink(bed.a().join("f"), bed.a().join("g")).unwrap();
    write_file(bed.b().join("f"), b"same").unwrap();
    write_file(bed.b().join("g"), b"same").unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Hardlinks);
    assert_eq!(paths(&r), [b"f".to_vec(), b"g".to_vec()]);
    assert_eq!(r.differences[0].a, "f = g");
}

#[test]
fn hardlink_partition_differs_with_same_link_counts() {
    // a: {x,y} {z,w}; b: {x,z} {y,w}: every file has two names on both sides.
    let bed = Bed::plain();
    for (tree, pairs) in [(bed.a(), [("x", "y"), ("z", "w")]), (bed.b(), [("x", "z"), ("y", "w")])]
    {
        for (first, second) in pairs {
            write_file(tree.join(first), b"same").unwrap();
            hardlink(tree.join(first), tree.join(second)).unwrap();
        }
    }
    bed.freeze();
    let r = bed.expect_only(Property::Hardlinks);
    assert_eq!(r.differences.len(), 4, "{r}");
}

#[test]
fn non_utf8_name() {
    let bed = Bed::plain();
    bed.build(|r| write_file(join(r, b"\xff\xfe\n"), b"one"));
    write_file(join(&bed.b(), b"\xff\xfe\n"), b"two").unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Content);
    assert_eq!(paths(&r), [b"\xff\xfe\n".to_vec()]);
    assert!(r.to_string().contains("\\xff\\xfe\\n: content"), "{r}");
}

#[test]
fn non_utf8_names_missing_and_extra() {
    let bed = Bed::plain();
    write_file(join(&bed.a(), b"caf\xe9"), b"x").unwrap();
    write_file(join(&bed.b(), b"caf\xc3\xa9"), b"x").unwrap();
    bed.freeze();
    let r = bed.compare(&CompareOptions::new());
    assert_eq!(r.properties(), BTreeSet::from([Property::Missing, Property::Extra]), "{r}");
}

#[test]
fn every_difference_is_reported() {
    let bed = Bed::plain();
    bed.build(|r| {
        mkdir(r.join("d"))?;
        write_file(r.join("d/f"), b"f")?;
        write_file(r.join("g"), b"g")?;
        symlink(b"g", r.join("l"))
    });
    let b = bed.b();
    write_file(b.join("d/f"), b"F").unwrap();
    chmod(b.join("g"), 0o600).unwrap();
    remove(b.join("l")).unwrap();
    symlink(b"G", b.join("l")).unwrap();
    write_file(b.join("extra"), b"e").unwrap();
    bed.freeze();
    let r = bed.compare(&CompareOptions::new());
    assert_eq!(
        r.properties(),
        BTreeSet::from([
            Property::Content,
            Property::Mode,
            Property::SymlinkTarget,
            Property::Extra
        ]),
        "{r}"
    );
}

#[test]
fn relaxed_property_is_not_reported_but_listed() {
    let bed = Bed::plain();
    bed.build(|r| write_file(r.join("f"), b"f"));
    write_file(bed.b().join("f"), b"F").unwrap();
    chmod(bed.b().join("f"), 0o600).unwrap();
    bed.freeze();
    let opts = CompareOptions::new().relax(Property::Content, "testing relaxations");
    let r = bed.compare(&opts);
    assert_eq!(r.properties(), BTreeSet::from([Property::Mode]), "{r}");
    assert_eq!(r.relaxations.len(), 1);
    assert_eq!(r.relaxations[0].property, Property::Content);
    assert_eq!(r.relaxations[0].reason, "testing relaxations");
    assert_eq!(r.relaxations[0].suppressed, 1);
    assert!(r.to_string().contains("relaxed content (testing relaxations): 1"), "{r}");
}

#[test]
fn names_with_newlines() {
    let bed = Bed::plain();
    bed.build(|r| {
        mkdir(r.join("dir\nname"))?;
        write_file(r.join("dir\nname/\n"), b"x")
    });
    write_file(bed.b().join("dir\nname/\n"), b"y").unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Content);
    assert_eq!(paths(&r), [b"dir\nname/\n".to_vec()]);
    assert!(r.to_string().contains("dir\\nname/\\n: content"), "{r}");
}

#[test]
fn tree_deeper_than_path_max() {
    use anysend_testbed::corpus::{DEEP_DEPTH, DEEP_NAME_LEN};
    let names = deep_names(DEEP_DEPTH, DEEP_NAME_LEN);
    assert!(names.iter().map(|n| n.len() + 1).sum::<usize>() > 4096);
    let bed = Bed::plain();
    for tree in [bed.a(), bed.b()] {
        let leaf = open_deep_dir(&tree, &names, true).unwrap();
        write_file_at(&leaf, b"leaf", b"leaf").unwrap();
    }
    // Cannot freeze by path; give both trees equal times level by level.
    let level_fds = |tree: &Path| {
        (0..=DEEP_DEPTH)
            .map(|d| open_deep_dir(tree, &names[..d], false).unwrap())
            .collect::<Vec<_>>()
    };
    let fix_times = |tree: &Path| {
        for fd in level_fds(tree).iter().rev() {
            let t = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec { tv_sec: T0, tv_nsec: 0 },
                last_modification: rustix::fs::Timespec { tv_sec: T0, tv_nsec: 0 },
            };
            let _ = rustix::fs::utimensat(fd, "leaf", &t, rustix::fs::AtFlags::empty());
            rustix::fs::futimens(fd, &t).unwrap();
        }
    };
    fix_times(&bed.a());
    fix_times(&bed.b());
    let r = bed.compare(&CompareOptions::new());
    assert!(r.is_equal(), "{r}");

    let leaf_b = open_deep_dir(&bed.b(), &names, false).unwrap();
    write_file_at(&leaf_b, b"leaf", b"LEAF").unwrap();
    fix_times(&bed.b());
    let r = bed.expect_only(Property::Content);
    let mut expected = names.join(&b'/');
    expected.extend_from_slice(b"/leaf");
    assert_eq!(paths(&r), [expected]);
}

// ---- properties needing root or a real file system (ext4 loop mount) ----

#[test]
fn uid() {
    let Some(bed) = Bed::ext4("uid") else { return };
    bed.build(|r| write_file(r.join("f"), b"f"));
    chown(bed.b().join("f"), 1000, 0).unwrap();
    bed.freeze();
    bed.expect_only(Property::Uid);
}

#[test]
fn gid() {
    let Some(bed) = Bed::ext4("gid") else { return };
    bed.build(|r| symlink(b"t", r.join("l")));
    chown(bed.b().join("l"), 0, 4242).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Gid);
    assert_eq!(r.differences[0].b, "4242");
}

#[test]
fn rdev() {
    let Some(bed) = Bed::ext4("rdev") else { return };
    bed.build(|r| {
        mknod_char(r.join("c"), 10, 200, 0o600)?;
        mknod_block(r.join("b"), 7, 200, 0o600)
    });
    remove(bed.b().join("b")).unwrap();
    mknod_block(bed.b().join("b"), 7, 201, 0o600).unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::Rdev);
    assert_eq!((r.differences[0].a.as_str(), r.differences[0].b.as_str()), ("7:200", "7:201"));
}

#[test]
fn xattr_user() {
    let Some(bed) = Bed::ext4("xattr_user") else {
        return;
    };
    bed.build(|r| {
        write_file(r.join("f"), b"f")?;
        set_xattr(r.join("f"), "user.k", b"v")
    });
    set_xattr(bed.b().join("f"), "user.k", b"w").unwrap();
    bed.freeze();
    bed.expect_only(Property::XattrUser);
}

#[test]
fn xattr_user_on_dir_and_empty_value() {
    let Some(bed) = Bed::ext4("xattr_user_on_dir_and_empty_value") else {
        return;
    };
    bed.build(|r| mkdir(r.join("d")));
    set_xattr(bed.b().join("d"), "user.empty", b"").unwrap();
    bed.freeze();
    let r = bed.expect_only(Property::XattrUser);
    assert_eq!(r.differences[0].a, "user.empty absent");
}

#[test]
fn xattr_trusted() {
    let Some(bed) = Bed::ext4("xattr_trusted") else {
        return;
    };
    bed.build(|r| mkfifo(r.join("p"), 0o600));
    set_xattr(bed.b().join("p"), "trusted.t", b"x").unwrap();
    bed.freeze();
    bed.expect_only(Property::XattrTrusted);
}

#[test]
fn xattr_security() {
    let Some(bed) = Bed::ext4("xattr_security") else {
        return;
    };
    bed.build(|r| write_file(r.join("f"), b"f"));
    set_xattr(bed.b().join("f"), "security.capability", &cap_net_bind_service()).unwrap();
    bed.freeze();
    bed.expect_only(Property::XattrSecurity);
}

#[test]
fn acl_access() {
    let Some(bed) = Bed::ext4("acl_access") else {
        return;
    };
    bed.build(|r| create_with_mode(r.join("f"), 0o644, b"f"));
    // The mask r-- equals the group bits, so the mode stays 0644.
    set_acl(bed.b().join("f"), "u:1234:r").unwrap();
    bed.freeze();
    bed.expect_only(Property::AclAccess);
}

#[test]
fn acl_default() {
    let Some(bed) = Bed::ext4("acl_default") else {
        return;
    };
    bed.build(|r| mkdir(r.join("d")));
    set_default_acl(bed.b().join("d"), "u:1234:rx").unwrap();
    bed.freeze();
    bed.expect_only(Property::AclDefault);
}

#[test]
fn chattr_flags() {
    let Some(bed) = Bed::ext4("chattr_flags") else {
        return;
    };
    bed.build(|r| {
        write_file(r.join("f"), b"f")?;
        mkdir(r.join("d"))
    })
    .freeze();
    add_flags(bed.b().join("f"), IFlags::IMMUTABLE).unwrap();
    add_flags(bed.b().join("d"), IFlags::NODUMP).unwrap();
    let r = bed.expect_only(Property::Flags);
    assert_eq!(paths(&r), [b"d".to_vec(), b"f".to_vec()]);
    assert_eq!(r.differences[1].b, "i");
    remove_flags(bed.b().join("f"), IFlags::IMMUTABLE).unwrap();
}

#[test]
fn devices_and_special_files_equal_on_ext4() {
    let Some(bed) = Bed::ext4("devices_and_special_files_equal_on_ext4") else {
        return;
    };
    bed.build(|r| {
        mknod_char(r.join("c"), 1, 3, 0o666)?;
        mknod_block(r.join("b"), 8, 0, 0o660)?;
        mkfifo(r.join("p"), 0o600)?;
        make_socket(r.join("s"))?;
        set_xattr(r.join("c"), "trusted.x", b"1")?;
        chown(r.join("s"), 5, 6)
    })
    .freeze();
    let r = bed.compare(&CompareOptions::new());
    assert!(r.is_equal(), "{r}");
}
