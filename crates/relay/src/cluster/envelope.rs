//! What relay nodes send each other over a room's Redis channel. Pure
//! encoding and decoding; no Redis here.
//!
//! ```text
//! version u8 (1) | kind u8 | from u64 | to u64 | seq u64 | count u32 | (len u32, bytes) × count
//! ```
//!
//! Integers are big-endian. `from` is the sending room actor's peer id
//! (random, new for every actor, so a restarted node or a reloaded room is a
//! new peer); `to` is 0 for every node or one peer id; `seq` numbers every
//! envelope a peer sends in its room, 1, 2, 3… so receivers notice gaps. The
//! parts are y-websocket messages, except for [`Kind::Saved`] (see
//! [`Saved`]). Everything read from Redis is validated: a bad envelope is
//! dropped and counted, it never reaches a room.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A room actor on some relay node.
pub type PeerId = u64;

/// `to` of an envelope meant for every node.
pub const EVERYONE: PeerId = 0;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 1 + 8 + 8 + 8 + 4;
/// Most parts one envelope may carry.
pub const MAX_PARTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Live traffic: document updates and awareness from the sender's clients.
    Frame,
    /// "I (re)joined or may have missed something": the sender's SyncStep1
    /// and awareness. Every other node answers with a [`Kind::Reply`].
    Hello,
    /// Answer to a Hello: SyncStep2 (what the hello's sender lacks), then the
    /// replier's own SyncStep1 and awareness.
    Reply,
    /// Answer to a Reply's SyncStep1: SyncStep2 only. Ends the exchange.
    Answer,
    /// The sender saved the room to control (see [`Saved`]).
    Saved,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Frame => 1,
            Kind::Hello => 2,
            Kind::Reply => 3,
            Kind::Answer => 4,
            Kind::Saved => 5,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            1 => Kind::Frame,
            2 => Kind::Hello,
            3 => Kind::Reply,
            4 => Kind::Answer,
            5 => Kind::Saved,
            _ => return None,
        })
    }

    /// Whether the parts carry everything the sender had at `seq` that the
    /// receiver lacked (answers to the receiver's state vector).
    pub fn is_full_state(self) -> bool {
        matches!(self, Kind::Reply | Kind::Answer)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    pub from: PeerId,
    pub to: PeerId,
    pub seq: u64,
    pub parts: Vec<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope too short")]
    Short,
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    #[error("too many parts ({0})")]
    Parts(u32),
    #[error("a part runs past the end")]
    Truncated,
    #[error("trailing bytes after the last part")]
    Trailing,
    #[error("malformed saved notice")]
    Saved,
}

impl Envelope {
    pub fn encode(&self) -> Bytes {
        let len = HEADER + self.parts.iter().map(|p| 4 + p.len()).sum::<usize>();
        let mut out = BytesMut::with_capacity(len);
        out.put_u8(VERSION);
        out.put_u8(self.kind.code());
        out.put_u64(self.from);
        out.put_u64(self.to);
        out.put_u64(self.seq);
        out.put_u32(self.parts.len() as u32);
        for p in &self.parts {
            out.put_u32(p.len() as u32);
            out.put_slice(p);
        }
        out.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<Envelope, EnvelopeError> {
        if buf.len() < HEADER {
            return Err(EnvelopeError::Short);
        }
        let version = buf.get_u8();
        if version != VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let code = buf.get_u8();
        let kind = Kind::from_code(code).ok_or(EnvelopeError::Kind(code))?;
        let (from, to, seq) = (buf.get_u64(), buf.get_u64(), buf.get_u64());
        let count = buf.get_u32();
        if count as usize > MAX_PARTS {
            return Err(EnvelopeError::Parts(count));
        }
        let mut parts = Vec::with_capacity(count as usize);
        for _ in 0..count {
            if buf.remaining() < 4 {
                return Err(EnvelopeError::Truncated);
            }
            let len = buf.get_u32() as usize;
            if buf.remaining() < len {
                return Err(EnvelopeError::Truncated);
            }
            parts.push(buf.split_to(len));
        }
        if buf.has_remaining() {
            return Err(EnvelopeError::Trailing);
        }
        Ok(Envelope {
            kind,
            from,
            to,
            seq,
            parts,
        })
    }
}

/// Body of a [`Kind::Saved`] envelope: control now holds everything the
/// sender had when its save started — all blocks below `state_vector`, and
/// every envelope up to `covers[peer]` from each listed peer (the sender's
/// own included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// A yrs v1-encoded state vector.
    pub state_vector: Bytes,
    pub covers: Vec<(PeerId, u64)>,
}

impl Saved {
    pub fn into_parts(self) -> Vec<Bytes> {
        let mut covers = BytesMut::with_capacity(self.covers.len() * 16);
        for (peer, seq) in &self.covers {
            covers.put_u64(*peer);
            covers.put_u64(*seq);
        }
        vec![self.state_vector, covers.freeze()]
    }

    pub fn from_parts(parts: &[Bytes]) -> Result<Saved, EnvelopeError> {
        let [sv, covers] = parts else {
            return Err(EnvelopeError::Saved);
        };
        if covers.len() % 16 != 0 {
            return Err(EnvelopeError::Saved);
        }
        let mut buf = covers.clone();
        let mut list = Vec::with_capacity(covers.len() / 16);
        while buf.has_remaining() {
            list.push((buf.get_u64(), buf.get_u64()));
        }
        Ok(Saved {
            state_vector: sv.clone(),
            covers: list,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            kind: Kind::Reply,
            from: 7,
            to: 9,
            seq: 42,
            parts: vec![Bytes::from_static(b"\x00\x01\x00"), Bytes::new()],
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        assert_eq!(Envelope::decode(e.encode()).unwrap(), e);
        let saved = Saved {
            state_vector: Bytes::from_static(b"\x00"),
            covers: vec![(1, 2), (3, 4)],
        };
        assert_eq!(
            Saved::from_parts(&saved.clone().into_parts()).unwrap(),
            saved
        );
    }

    #[test]
    fn refuses_what_does_not_parse() {
        let good = sample().encode();
        assert_eq!(
            Envelope::decode(good.slice(..10)),
            Err(EnvelopeError::Short)
        );
        assert_eq!(
            Envelope::decode(good.slice(..good.len() - 1)),
            Err(EnvelopeError::Truncated)
        );
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert_eq!(
            Envelope::decode(trailing.into()),
            Err(EnvelopeError::Trailing)
        );
        let mut bad_kind = good.to_vec();
        bad_kind[1] = 99;
        assert_eq!(
            Envelope::decode(bad_kind.into()),
            Err(EnvelopeError::Kind(99))
        );
        let mut many = good.to_vec();
        many[26..30].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(
            Envelope::decode(many.into()),
            Err(EnvelopeError::Parts(1000))
        );
        assert!(Saved::from_parts(&[Bytes::new(), Bytes::from_static(b"123")]).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: no extra dependency for a fuzz loop.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let good = sample().encode();
        for round in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 80) as usize;
            let mut bytes: Vec<u8> = if round % 2 == 0 {
                good.to_vec()
            } else {
                Vec::new()
            };
            bytes.truncate(len);
            for i in 0..len.saturating_sub(bytes.len()) {
                bytes.push((x >> (i % 8 * 8)) as u8);
            }
            if let Some(b) = bytes.get_mut((x % 64) as usize) {
                *b ^= (x >> 3) as u8;
            }
            let _ = Envelope::decode(Bytes::from(bytes));
        }
    }
}
