//! SHA-256 that can be carried from one part of a file to the next.
//!
//! SHA-256 reads its input in 64-byte blocks and keeps eight 32-bit words
//! between them. At a part boundary that is a multiple of 64 bytes, those
//! words (the *state*) are everything the rest of the hash needs. A client
//! that hashed the whole file knows the state at each part's offset and
//! sends it with the part ([`SHA256_STATE_HEADER`]); control hashes the part
//! from that state as it passes and records where it ended. When every
//! part's claimed start is the previous part's recorded end, and the last
//! part ends in the declared hash, the stored parts hash to the declared
//! SHA-256 without reading the file back.

use sha2::block_api::compress256;

/// Request header of an upload part: the SHA-256 state of the file's bytes
/// before the part (64 hex digits, the eight words big-endian).
pub const SHA256_STATE_HEADER: &str = "tandem-sha256-state";

const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// An incremental SHA-256 that can start from, and report, a state.
#[derive(Clone)]
pub struct Sha256State {
    state: [u32; 8],
    block: [u8; 64],
    filled: usize,
    /// Bytes hashed, counting those before the state it started from.
    len: u64,
}

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State::new()
    }
}

impl Sha256State {
    /// The hash of nothing yet.
    pub fn new() -> Self {
        Sha256State {
            state: INITIAL,
            block: [0; 64],
            filled: 0,
            len: 0,
        }
    }

    /// Continues from the state of the first `offset` bytes (`state_hex` as
    /// [`Sha256State::state_hex`] gives it). `None` when the text is not 64
    /// hex digits or `offset` is not a multiple of 64.
    pub fn resume(state_hex: &str, offset: u64) -> Option<Self> {
        if state_hex.len() != 64 || !offset.is_multiple_of(64) {
            return None;
        }
        let mut state = [0u32; 8];
        for (i, word) in state.iter_mut().enumerate() {
            let digits = state_hex.get(i * 8..i * 8 + 8)?;
            *word = u32::from_str_radix(digits, 16).ok()?;
        }
        // from_str_radix takes a leading '+'; only hex digits are a state.
        if !state_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Sha256State {
            state,
            block: [0; 64],
            filled: 0,
            len: offset,
        })
    }

    /// Bytes hashed so far, including those before the state it resumed from.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.filled > 0 {
            let take = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < 64 {
                return;
            }
            compress256(&mut self.state, &[self.block]);
            self.filled = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        compress256(&mut self.state, blocks);
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// The state so far (64 lowercase hex digits), when the bytes hashed are
    /// a whole number of 64-byte blocks.
    pub fn state_hex(&self) -> Option<String> {
        (self.filled == 0).then(|| self.state.iter().map(|w| format!("{w:08x}")).collect())
    }

    /// The SHA-256 of everything hashed, 64 lowercase hex digits.
    pub fn finish_hex(mut self) -> String {
        let bits = self.len.wrapping_mul(8);
        let mut tail = [0u8; 128];
        tail[..self.filled].copy_from_slice(&self.block[..self.filled]);
        tail[self.filled] = 0x80;
        let end = if self.filled < 56 { 64 } else { 128 };
        tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        let (blocks, _) = tail[..end].as_chunks::<64>();
        compress256(&mut self.state, blocks);
        self.state.iter().map(|w| format!("{w:08x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reference(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn matches_sha256_for_every_length_around_the_padding_edges() {
        for n in [
            0,
            1,
            55,
            56,
            63,
            64,
            65,
            119,
            120,
            127,
            128,
            1000,
            4096 + 17,
        ] {
            let data = bytes(n);
            let mut h = Sha256State::new();
            // In uneven pieces, so the partial block is exercised.
            for piece in data.chunks(7) {
                h.update(piece);
            }
            assert_eq!(h.len(), n as u64);
            assert_eq!(h.finish_hex(), reference(&data), "length {n}");
        }
    }

    #[test]
    fn a_state_carried_across_parts_gives_the_whole_files_hash() {
        let data = bytes(64 * 1024 + 333);
        let mut first = Sha256State::new();
        first.update(&data[..64 * 512]);
        let state = first.state_hex().expect("a block boundary");
        let mut second = Sha256State::resume(&state, 64 * 512).expect("a valid state");
        second.update(&data[64 * 512..]);
        assert_eq!(second.finish_hex(), reference(&data));
    }

    #[test]
    fn a_state_is_only_reported_at_a_block_boundary() {
        let mut h = Sha256State::new();
        assert_eq!(
            h.state_hex().as_deref(),
            Some("6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19")
        );
        h.update(&[1; 65]);
        assert!(h.state_hex().is_none());
        h.update(&[1; 63]);
        assert!(h.state_hex().is_some());
    }

    #[test]
    fn resume_refuses_what_is_not_a_state() {
        let ok = "0".repeat(64);
        assert!(Sha256State::resume(&ok, 64).is_some());
        assert!(
            Sha256State::resume(&ok, 65).is_none(),
            "not a block boundary"
        );
        assert!(Sha256State::resume(&"0".repeat(63), 64).is_none());
        assert!(Sha256State::resume(&format!("+{}", "0".repeat(63)), 64).is_none());
        assert!(Sha256State::resume(&format!("g{}", "0".repeat(63)), 64).is_none());
        assert!(Sha256State::resume(&format!("é{}", "0".repeat(62)), 64).is_none());
    }
}
