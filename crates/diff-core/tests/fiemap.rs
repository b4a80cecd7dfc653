//! FIEMAP on real btrfs snapshots: a 4 KiB change in a 64 MiB file is found by reading about
//! 4 KiB, not 128 MiB, and the reported range is exactly the changed block.

use anysend_diff_core::{plan, Op, Options, Recorder};
use anysend_testbed::fsops::{pattern, write_at, write_file};
use anysend_testbed::{require_privileged, BtrfsFs};

const MIB: u64 = 1 << 20;
const CHANGED: u64 = 40 * MIB + 8192;

fn big_file_ranges(
    opts: &Options,
) -> Option<(Vec<std::ops::Range<u64>>, anysend_diff_core::Summary)> {
    let _p = require_privileged("fiemap_skips_shared_extents")?;
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    write_file(vol.join("big"), &pattern(64 * MIB as usize, 7)).unwrap();
    write_file(vol.join("small"), b"unchanged").unwrap();
    let s1 = fs.snapshot_ro(&vol, "s1");
    write_at(vol.join("big"), CHANGED, &pattern(4096, 8)).unwrap();
    let s2 = fs.snapshot_ro(&vol, "s2");
    let mut rec = Recorder::default();
    let summary = plan(&s1, &s2, opts, &mut rec).unwrap();
    let ranges = rec
        .ops
        .iter()
        .find_map(|o| match o {
            Op::Update(u) if u.path == b"big" => u.content.as_ref().map(|c| c.ranges.clone()),
            _ => None,
        })
        .expect("big is updated with content ranges");
    Some((ranges, summary))
}

#[test]
fn fiemap_skips_shared_extents() {
    let Some((ranges, summary)) = big_file_ranges(&Options::default()) else { return };
    assert_eq!(ranges, vec![CHANGED..CHANGED + 4096]);
    assert!(
        summary.content.bytes_read < MIB,
        "read {} bytes to find a 4 KiB change",
        summary.content.bytes_read
    );
    assert!(summary.content.bytes_skipped >= 63 * MIB, "{:?}", summary.content);
    eprintln!("4 KiB change in 64 MiB: {:?}", summary.content);
}

#[test]
fn without_fiemap_the_same_range_is_found_by_reading() {
    let opts = Options { no_fiemap: true, ..Options::default() };
    let Some((ranges, summary)) = big_file_ranges(&opts) else { return };
    assert_eq!(ranges, vec![CHANGED..CHANGED + 4096]);
    assert!(summary.content.bytes_read >= 128 * MIB, "{:?}", summary.content);
    assert_eq!(summary.content.bytes_skipped, 0);
}
