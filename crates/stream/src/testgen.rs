//! proptest strategies for each field kind, named after the kinds in `field.rs` so that
//! `define_records!` can build a strategy for every record from the same description.

#![allow(non_snake_case)]

use proptest::collection::vec;
use proptest::prelude::*;

use crate::field::{Data, NodeType, ObjectType};
use crate::format::{MAX_DATA, MAX_LINK_TARGET, MAX_PATH, MAX_XATTR_NAME, MAX_XATTR_VALUE};

fn no_nul(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(1u8..=255, 0..=max)
}

/// A maximal byte string: mostly one byte repeated, with non-UTF-8 bytes at both ends.
fn maximal(len: usize) -> Vec<u8> {
    let mut v = vec![b'x'; len];
    v[0] = 0xff;
    v[len - 1] = 0xfe;
    v
}

pub(crate) fn Path() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        20 => no_nul(40),
        2 => vec(prop_oneof![Just(b'/'), Just(b'\n'), Just(0x80u8), Just(0xffu8), Just(b'a')], 0..64),
        1 => Just(maximal(MAX_PATH as usize)),
    ]
    .boxed()
}

pub(crate) fn LinkTarget() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![20 => vec(1u8..=255, 1..=40), 1 => Just(maximal(MAX_LINK_TARGET as usize))].boxed()
}

pub(crate) fn XattrName() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![20 => vec(1u8..=255, 1..=30), 1 => Just(maximal(MAX_XATTR_NAME as usize))].boxed()
}

pub(crate) fn XattrValue() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![20 => vec(any::<u8>(), 0..=64), 1 => Just(vec![7u8; MAX_XATTR_VALUE as usize])]
        .boxed()
}

pub(crate) fn DataField() -> BoxedStrategy<Data> {
    prop_oneof![
        4 => Just(Vec::new()),
        20 => vec(any::<u8>(), 0..=300),
        10 => (any::<u8>(), 1usize..5000).prop_map(|(b, n)| vec![b; n]),
        1 => Just(vec![0u8; MAX_DATA as usize]),
        1 => Just((0..MAX_DATA).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
    ]
    .prop_map(Data::from)
    .boxed()
}

pub(crate) fn U32() -> BoxedStrategy<u32> {
    any::<u32>().boxed()
}
pub(crate) fn U64() -> BoxedStrategy<u64> {
    any::<u64>().boxed()
}
pub(crate) fn I64() -> BoxedStrategy<i64> {
    any::<i64>().boxed()
}
pub(crate) fn Hex32() -> BoxedStrategy<u32> {
    any::<u32>().boxed()
}
pub(crate) fn Crc32() -> BoxedStrategy<u32> {
    any::<u32>().boxed()
}
pub(crate) fn Owner() -> BoxedStrategy<u32> {
    (0u32..u32::MAX).boxed()
}
pub(crate) fn Mode() -> BoxedStrategy<u32> {
    (0u32..=0o7777).boxed()
}
pub(crate) fn Nanos() -> BoxedStrategy<u32> {
    (0u32..1_000_000_000).boxed()
}
pub(crate) fn Node() -> BoxedStrategy<NodeType> {
    prop_oneof![
        Just(NodeType::Fifo),
        Just(NodeType::Socket),
        Just(NodeType::CharDevice),
        Just(NodeType::BlockDevice)
    ]
    .boxed()
}

pub(crate) fn Otype() -> BoxedStrategy<ObjectType> {
    use ObjectType::*;
    prop_oneof![
        Just(File),
        Just(Dir),
        Just(Symlink),
        Just(Fifo),
        Just(Socket),
        Just(CharDevice),
        Just(BlockDevice)
    ]
    .boxed()
}
