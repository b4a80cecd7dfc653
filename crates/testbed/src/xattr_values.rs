//! Values of the xattrs the kernel checks before it stores them (`security.capability`,
//! `system.posix_acl_access`), as raw bytes.
//!
//! A test that sets such an xattr directly, or puts one in a stream, needs bytes the kernel
//! accepts; they are spelled out once here, field by field, rather than copied as opaque blobs.

/// The 20-byte `security.capability` value (v2) granting
/// CAP_NET_BIND_SERVICE permitted+effective: a real-world security xattr
/// the kernel validates and clears on chown.
pub fn cap_net_bind_service() -> Vec<u8> {
    capability(1 << 10)
}

/// CAP_NET_RAW permitted+effective: a second valid value, for a capability that changes.
pub fn cap_net_raw() -> Vec<u8> {
    capability(1 << 13)
}

/// A `security.capability` value (v2, 20 bytes) with the capabilities in `permitted` (bit n is
/// capability n, below 32) permitted and effective, none inheritable.
pub fn capability(permitted: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // revision 2, effective
    v.extend_from_slice(&permitted.to_le_bytes()); // permitted low word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable low word
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted high word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable high word
    v
}

/// A valid `system.posix_acl_access` value (version 2): user::rw-, user:1000:r--, group::r--,
/// mask::r--, other::---. Each entry is tag (u16), permissions (u16), id (u32; `u32::MAX` where
/// the tag has no id).
pub fn acl_access() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}
