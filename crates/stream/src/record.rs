//! The record types of format v1, each described once as a list of (field, kind) pairs.
//!
//! `define_records!` turns that one description into the `Record` enum, its encoder, its decoder,
//! its `--dump` text and the layout table that STREAM_FORMAT.md carries verbatim (a test keeps the
//! two in step). Adding a record type is one line here; there is no hand-written encode/decode
//! pair that could drift from its twin.

use std::fmt;

use crate::field::{
    Codec, Crc32, Cursor, Data, DataField, FieldProblem, Hex32, LinkTarget, Mode, Nanos, Node,
    NodeType, ObjectType, Otype, Owner, Path, XattrName, XattrValue, I64, U32, U64,
};

/// One row of the layout table: a record type and its fields in wire order.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub code: u16,
    pub name: &'static str,
    pub doc: &'static str,
    pub class: Class,
    pub fields: &'static [(&'static str, &'static str)],
}

macro_rules! define_records {
    ($(
        #[doc = $doc:literal]
        $variant:ident = $code:literal, $name:literal, $class:ident { $($field:ident : $ty:ty = $kind:ident),* $(,)? }
    ),* $(,)?) => {
        /// One operation of a stream. Paths are bytes relative to the receiving root.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Record {
            $(
                #[doc = $doc]
                $variant { $($field: $ty),* },
            )*
        }

        impl Record {
            /// The record type number written on the wire.
            pub fn code(&self) -> u16 {
                match self { $(Record::$variant { .. } => $code,)* }
            }

            /// The record type's name, as `--dump` prints it.
            pub fn name(&self) -> &'static str {
                match self { $(Record::$variant { .. } => $name,)* }
            }

            /// What the record does, in the terms a receiver plans by ([`Class`]).
            pub fn class(&self) -> Class {
                match self { $(Record::$variant { .. } => Class::$class,)* }
            }

            /// The name of a record type number, if this version knows it.
            pub fn name_of(code: u16) -> Option<&'static str> {
                match code { $($code => Some($name),)* _ => None }
            }

            /// Every record type with its fields in wire order.
            pub const LAYOUTS: &'static [Layout] = &[
                $(Layout {
                    code: $code,
                    name: $name,
                    doc: $doc,
                    class: Class::$class,
                    fields: &[$((stringify!($field), <$kind as Codec>::KIND)),*],
                },)*
            ];

            /// Appends every field but a data field to `out` and returns the data field's bytes,
            /// if the record has one, to be written after them.
            #[allow(unused_variables)]
            pub(crate) fn encode_fields<'a>(
                &'a self,
                out: &mut Vec<u8>,
            ) -> Result<Option<&'a [u8]>, (&'static str, FieldProblem)> {
                let mut tail = None;
                match self {
                    $(Record::$variant { $($field),* } => {
                        $(
                            if let Some(t) = <$kind as Codec>::put($field, out)
                                .map_err(|p| (stringify!($field), p))?
                            {
                                tail = Some(t);
                            }
                        )*
                    })*
                }
                Ok(tail)
            }

            /// Decodes the payload of a record of type `code`; `None` for a type this version
            /// does not know.
            #[allow(unused_variables, unused_mut)]
            pub(crate) fn decode_fields(
                code: u16,
                mut cur: Cursor,
            ) -> Option<Result<Record, (&'static str, FieldProblem)>> {
                let rec = match code {
                    $($code => (|| {
                        $(let $field = <$kind as Codec>::get(&mut cur)
                            .map_err(|p| (stringify!($field), p))?;)*
                        cur.finish().map_err(|p| ("(end)", p))?;
                        Ok(Record::$variant { $($field),* })
                    })(),)*
                    _ => return None,
                };
                Some(rec)
            }

            /// Whether this record type ends in a data field (and so may be compressed).
            pub fn has_data(&self) -> bool {
                match self {
                    $(Record::$variant { .. } => {
                        false $(|| <$kind as Codec>::IS_DATA)*
                    })*
                }
            }
        }

        /// Every record type but `end`, with arbitrary valid fields: the property tests' input,
        /// derived from the same description as the codec.
        #[cfg(test)]
        pub(crate) fn arb_record() -> proptest::strategy::BoxedStrategy<Record> {
            use proptest::strategy::Strategy;
            let arms: Vec<proptest::strategy::BoxedStrategy<Record>> = vec![$(
                ($(crate::testgen::$kind(),)*)
                    .prop_map(|($($field,)*)| Record::$variant { $($field),* })
                    .boxed(),
            )*];
            proptest::strategy::Union::new(arms)
                .prop_filter("end is written by finish()", |r| !matches!(r, Record::End { .. }))
                .boxed()
        }

        impl fmt::Display for Record {
            /// The `--dump` form: the type name, then `field=value` pairs.
            #[allow(unused_variables)]
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:<16}", self.name())?;
                match self {
                    $(Record::$variant { $($field),* } => {
                        $(
                            write!(f, " {}=", stringify!($field))?;
                            <$kind as Codec>::show($field, f)?;
                        )*
                    })*
                }
                Ok(())
            }
        }
    };
}

define_records! {
    /// Make a directory (mode 0700 until a chmod record sets it).
    Mkdir = 1, "mkdir", Make { path: Vec<u8> = Path },
    /// Make an empty regular file (mode 0600 until a chmod record sets it).
    Create = 2, "create", Make { path: Vec<u8> = Path },
    /// Make a symbolic link whose target is `target`, taken as bytes and never resolved.
    Symlink = 3, "symlink", Make { path: Vec<u8> = Path, target: Vec<u8> = LinkTarget },
    /// Make a fifo, socket or device node; major and minor are zero for fifos and sockets.
    Mknod = 4, "mknod", Make { path: Vec<u8> = Path, node: NodeType = Node, major: u32 = U32, minor: u32 = U32 },
    /// Make `path` another name of the object already at `existing`.
    Link = 5, "link", Make { path: Vec<u8> = Path, existing: Vec<u8> = Path },
    /// Remove the name `path` of a non-directory.
    Unlink = 6, "unlink", Remove { path: Vec<u8> = Path },
    /// Remove the empty directory `path`.
    Rmdir = 7, "rmdir", Remove { path: Vec<u8> = Path },
    /// Move the name `from` to `to`; `to` must not exist.
    Rename = 8, "rename", Rename { from: Vec<u8> = Path, to: Vec<u8> = Path },
    /// Write `data` at `offset` of the regular file `path`.
    Write = 9, "write", Data { path: Vec<u8> = Path, offset: u64 = U64, data: Data = DataField },
    /// Make the range [offset, offset+len) of `path` a hole (reads as zeros, no storage).
    Hole = 10, "hole", Data { path: Vec<u8> = Path, offset: u64 = U64, len: u64 = U64 },
    /// Set the size of the regular file `path`; growing adds a hole.
    Truncate = 11, "truncate", Data { path: Vec<u8> = Path, size: u64 = U64 },
    /// Copy len bytes at src_offset of the origin version of `path` to dst_offset of `path`.
    CopyFromOrigin = 12, "copy_from_origin", Data { path: Vec<u8> = Path, src_offset: u64 = U64, dst_offset: u64 = U64, len: u64 = U64 },
    /// Set the extended attribute `name` of `path` (not following a final symlink).
    SetXattr = 13, "set_xattr", Meta { path: Vec<u8> = Path, name: Vec<u8> = XattrName, value: Vec<u8> = XattrValue },
    /// Remove the extended attribute `name` of `path`.
    RemoveXattr = 14, "remove_xattr", Meta { path: Vec<u8> = Path, name: Vec<u8> = XattrName },
    /// Set the permission bits of `path`, setuid, setgid and sticky included.
    Chmod = 15, "chmod", Meta { path: Vec<u8> = Path, mode: u32 = Mode },
    /// Set the numeric owner and group of `path` (not following a final symlink).
    Chown = 16, "chown", Meta { path: Vec<u8> = Path, uid: u32 = Owner, gid: u32 = Owner },
    /// Set the access and modification times of `path` (not following a final symlink).
    Utimes = 17, "utimes", Meta { path: Vec<u8> = Path, atime_sec: i64 = I64, atime_nsec: u32 = Nanos, mtime_sec: i64 = I64, mtime_nsec: u32 = Nanos },
    /// Set the inode flags of `path` (FS_IOC_SETFLAGS bits, as chattr shows them).
    SetFlags = 18, "set_flags", Meta { path: Vec<u8> = Path, flags: u32 = Hex32 },
    /// Close the stream: records before this one, bytes before this one, the chained checksum.
    End = 19, "end", End { records: u64 = U64, bytes: u64 = U64, chain: u32 = Crc32 },
    /// State the origin object at `path` as the writer read it (one the stream changes, removes, renames or links); change nothing. Every `expect` precedes the first record that changes the tree.
    Expect = 20, "expect", Check { path: Vec<u8> = Path, otype: ObjectType = Otype, mode: u32 = Mode, uid: u32 = Owner, gid: u32 = Owner, nlink: u32 = U32, size: u64 = U64, mtime_sec: i64 = I64, mtime_nsec: u32 = Nanos },
}

/// The classes of records: what a record does to the tree, which is what a receiver plans by
/// (what must be kept to undo it, which records may be applied again after a kill, which ones
/// change what a path names). Each record type's class is part of its one description above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Makes a name: `mkdir`, `create`, `symlink`, `mknod`, `link`.
    Make,
    /// Removes a name: `unlink`, `rmdir`.
    Remove,
    /// Moves a name: `rename`.
    Rename,
    /// Changes the bytes of a regular file: `write`, `hole`, `truncate`, `copy_from_origin`.
    Data,
    /// Changes an attribute of an object: xattrs, mode, owner, times, inode flags.
    Meta,
    /// Closes the stream.
    End,
    /// States what the receiver must hold before the tree changes (`expect`): it changes
    /// nothing, so a reader that does not know such a record may skip it (the writer marks it
    /// SKIPPABLE).
    Check,
}

impl Class {
    /// The name STREAM_FORMAT.md uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Make => "make",
            Class::Remove => "remove",
            Class::Rename => "rename",
            Class::Data => "data",
            Class::Meta => "meta",
            Class::End => "end",
            Class::Check => "check",
        }
    }
}

impl Record {
    /// The path the record acts on (the first path field), if it has one.
    pub fn path(&self) -> Option<&[u8]> {
        use Record::*;
        match self {
            Mkdir { path }
            | Create { path }
            | Symlink { path, .. }
            | Mknod { path, .. }
            | Link { path, .. }
            | Unlink { path }
            | Rmdir { path }
            | Write { path, .. }
            | Hole { path, .. }
            | Truncate { path, .. }
            | CopyFromOrigin { path, .. }
            | SetXattr { path, .. }
            | RemoveXattr { path, .. }
            | Chmod { path, .. }
            | Chown { path, .. }
            | Utimes { path, .. }
            | SetFlags { path, .. }
            | Expect { path, .. } => Some(path),
            Rename { from, .. } => Some(from),
            End { .. } => None,
        }
    }

    /// The second path field: `link`'s `existing`, `rename`'s `to`.
    pub fn second_path(&self) -> Option<&[u8]> {
        match self {
            Record::Link { existing, .. } => Some(existing),
            Record::Rename { to, .. } => Some(to),
            _ => None,
        }
    }

    /// Every path the record names: its first path field, then its second.
    pub fn paths(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.path().into_iter().chain(self.second_path())
    }

    /// For a structural record, the paths in whose directories it adds or removes an entry:
    /// its path, and a rename's `to` (a link's `existing` keeps its entry as it is).
    pub fn entries_changed(&self) -> impl Iterator<Item = &[u8]> {
        let second = match self {
            Record::Rename { to, .. } => Some(&to[..]),
            _ => None,
        };
        self.path().filter(|_| self.is_structural()).into_iter().chain(second)
    }

    /// Whether it changes which names exist (class make, remove or rename).
    pub fn is_structural(&self) -> bool {
        matches!(self.class(), Class::Make | Class::Remove | Class::Rename)
    }

    /// Whether, after it, a path may name another object than before (class remove or rename):
    /// what was learnt about paths before it (open files, resolved directories) is stale.
    pub fn moves_paths(&self) -> bool {
        matches!(self.class(), Class::Remove | Class::Rename)
    }

    /// Whether one of its paths can name a directory that has entries: `rename` and `rmdir`
    /// move or remove one, `mkdir` makes one (a link's `existing` is never a directory).
    pub fn may_name_directory(&self) -> bool {
        matches!(self, Record::Rename { .. } | Record::Rmdir { .. } | Record::Mkdir { .. })
    }

    /// For a data record, the file and the bytes [start, end) of it that the record changes
    /// (a truncation changes everything from the new size on; sums saturate rather than wrap).
    pub fn changed_range(&self) -> Option<(&[u8], u64, u64)> {
        match self {
            Record::Write { path, offset, data } => {
                Some((path, *offset, offset.saturating_add(data.len() as u64)))
            }
            Record::Hole { path, offset, len } => {
                Some((path, *offset, offset.saturating_add(*len)))
            }
            Record::Truncate { path, size } => Some((path, *size, u64::MAX)),
            Record::CopyFromOrigin { path, dst_offset, len, .. } => {
                Some((path, *dst_offset, dst_offset.saturating_add(*len)))
            }
            _ => None,
        }
    }

    /// For a data record, the file it writes.
    pub fn data_path(&self) -> Option<&[u8]> {
        self.changed_range().map(|(path, _, _)| path)
    }
}

/// The record and field-kind tables as they appear in STREAM_FORMAT.md, generated from the one
/// description.
pub fn layout_table() -> String {
    let mut s = String::from(
        "| type | name | class | fields, in wire order (name: kind) | meaning |\n|---:|---|---|---|---|\n",
    );
    for l in Record::LAYOUTS {
        let fields: Vec<String> = l.fields.iter().map(|(n, k)| format!("`{n}`: {k}")).collect();
        s.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            l.code,
            l.name,
            l.class.as_str(),
            fields.join(", "),
            l.doc.trim()
        ));
    }
    s.push_str("\n| kind | bytes |\n|---|---|\n");
    for (kind, layout) in crate::field::KINDS {
        s.push_str(&format!("| {kind} | {layout} |\n"));
    }
    s
}
