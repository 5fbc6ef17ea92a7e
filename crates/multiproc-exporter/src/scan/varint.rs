//! LEB128 varints, the byte code of the compact per-file lists (values, key runs).
//! Written by hand: two five-line functions, where a crate would add a dependency for
//! nothing more.

/// Appends `x` as a varint (7 bits a byte, low bits first).
pub(super) fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Reads the varint at `*pos` and moves `pos` past it.
pub(super) fn get_varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut x = 0u64;
    let mut shift = 0;
    while let Some(&byte) = b.get(*pos) {
        *pos += 1;
        x |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            break;
        }
        shift += 7;
    }
    x
}

/// Zigzag code of a signed number (small magnitudes give small codes).
pub(super) fn zigzag(z: i64) -> u64 {
    ((z << 1) ^ (z >> 63)) as u64
}

/// The signed number of a zigzag code.
pub(super) fn unzigzag(code: u64) -> i64 {
    ((code >> 1) as i64) ^ -((code & 1) as i64)
}
