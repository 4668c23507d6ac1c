//! The few y-protocols messages the load generator speaks, encoded by hand
//! (lib0 varUint framing) so a client costs no more than its socket and its
//! document, and Hocuspocus' framing: every message is prefixed with the
//! document name as a lib0 varString, and sync answers may come as type 4
//! (`SyncReply`), which is a sync message too.

/// y-protocols message types (and Hocuspocus' additions).
const MSG_SYNC: u64 = 0;
const MSG_AWARENESS: u64 = 1;
const MSG_AUTH: u64 = 2;
const MSG_HOCUSPOCUS_SYNC_REPLY: u64 = 4;
/// Sync sub-types.
const SYNC_STEP1: u64 = 0;
const SYNC_STEP2: u64 = 1;
const SYNC_UPDATE: u64 = 2;

/// How messages are framed on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// y-websocket: one y-protocols message per binary frame.
    Plain,
    /// Hocuspocus: the document name, then the message.
    Hocuspocus { doc: String },
}

/// A sync message from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync<'a> {
    Step1(&'a [u8]),
    Step2(&'a [u8]),
    Update(&'a [u8]),
}

pub fn write_var_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads a varUint; `None` when truncated or longer than 64 bits.
pub fn read_var_uint(input: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(n);
        }
    }
    None
}

/// Reads a varUint-prefixed byte string; `None` when truncated.
pub fn read_var_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(read_var_uint(input)?).ok()?;
    if len > input.len() {
        return None;
    }
    let (bytes, rest) = input.split_at(len);
    *input = rest;
    Some(bytes)
}

impl Framing {
    fn start(&self, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity + 16);
        if let Framing::Hocuspocus { doc } = self {
            write_var_bytes(&mut out, doc.as_bytes());
        }
        out
    }

    fn sync(&self, kind: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = self.start(payload.len() + 8);
        write_var_uint(&mut out, MSG_SYNC);
        write_var_uint(&mut out, kind);
        write_var_bytes(&mut out, payload);
        out
    }

    /// SyncStep1 with an encoded state vector.
    pub fn step1(&self, state_vector: &[u8]) -> Vec<u8> {
        self.sync(SYNC_STEP1, state_vector)
    }

    /// SyncStep2 with a v1 update.
    pub fn step2(&self, update: &[u8]) -> Vec<u8> {
        self.sync(SYNC_STEP2, update)
    }

    /// A document update (v1).
    pub fn update(&self, update: &[u8]) -> Vec<u8> {
        self.sync(SYNC_UPDATE, update)
    }

    /// An awareness update with no entries: what clients send to stay alive.
    pub fn keepalive(&self) -> Vec<u8> {
        let mut out = self.start(3);
        write_var_uint(&mut out, MSG_AWARENESS);
        write_var_bytes(&mut out, &[0]);
        out
    }

    /// Hocuspocus' authentication message (it queues everything else until
    /// one arrives); `None` for plain y-websocket.
    pub fn auth(&self, token: &str) -> Option<Vec<u8>> {
        let Framing::Hocuspocus { .. } = self else {
            return None;
        };
        let mut out = self.start(token.len() + 4);
        write_var_uint(&mut out, MSG_AUTH);
        write_var_uint(&mut out, 0); // token sub-type
        write_var_bytes(&mut out, token.as_bytes());
        Some(out)
    }

    /// The sync message in a frame from the server, if it is one. Anything
    /// else (awareness, auth answers, Hocuspocus' sync status) is `None`;
    /// so are frames for another document and malformed frames.
    pub fn parse<'a>(&self, frame: &'a [u8]) -> Option<Sync<'a>> {
        let mut input = frame;
        let hocuspocus = matches!(self, Framing::Hocuspocus { .. });
        if let Framing::Hocuspocus { doc } = self {
            if read_var_bytes(&mut input)? != doc.as_bytes() {
                return None;
            }
        }
        let kind = read_var_uint(&mut input)?;
        if kind != MSG_SYNC && !(hocuspocus && kind == MSG_HOCUSPOCUS_SYNC_REPLY) {
            return None;
        }
        let sub = read_var_uint(&mut input)?;
        let payload = read_var_bytes(&mut input)?;
        match sub {
            SYNC_STEP1 => Some(Sync::Step1(payload)),
            SYNC_STEP2 => Some(Sync::Step2(payload)),
            SYNC_UPDATE => Some(Sync::Update(payload)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::encoder::Encode;

    #[test]
    fn var_uint_round_trips_at_the_boundaries() {
        for n in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_var_uint(&mut out, n);
            let mut input = out.as_slice();
            assert_eq!(read_var_uint(&mut input), Some(n));
            assert!(input.is_empty());
        }
        assert_eq!(read_var_uint(&mut [0x80u8].as_slice()), None);
        assert_eq!(read_var_uint(&mut [0xffu8; 11].as_slice()), None);
    }

    #[test]
    fn plain_messages_match_what_yrs_encodes() {
        let payload = vec![1, 2, 3, 250];
        let plain = Framing::Plain;
        let yrs_update = Message::Sync(SyncMessage::Update(payload.clone())).encode_v1();
        assert_eq!(plain.update(&payload), yrs_update);
        let yrs_step2 = Message::Sync(SyncMessage::SyncStep2(payload.clone())).encode_v1();
        assert_eq!(plain.step2(&payload), yrs_step2);
        assert_eq!(plain.keepalive(), vec![1, 1, 0]);
        assert_eq!(plain.auth("t"), None);
        assert_eq!(plain.parse(&yrs_update), Some(Sync::Update(&payload)));
        assert_eq!(plain.parse(&yrs_step2), Some(Sync::Step2(&payload)));
        assert_eq!(plain.parse(&plain.step1(&[0])), Some(Sync::Step1(&[0])));
        assert_eq!(plain.parse(&[1, 1, 0]), None);
        assert_eq!(plain.parse(&[0, 2, 9, 1]), None, "truncated payload");
        assert_eq!(plain.parse(&[]), None);
    }

    #[test]
    fn hocuspocus_frames_carry_the_document_name() {
        let h = Framing::Hocuspocus {
            doc: "room-1".into(),
        };
        let update = h.update(&[7, 7]);
        assert_eq!(&update[..7], b"\x06room-1");
        assert_eq!(&update[7..], &[0, 2, 2, 7, 7]);
        assert_eq!(h.parse(&update), Some(Sync::Update(&[7, 7])));
        let auth = h.auth("").unwrap();
        assert_eq!(&auth[7..], &[2, 0, 0]);
        // A SyncReply (type 4) carries a sync message too.
        let mut reply = b"\x06room-1".to_vec();
        reply.extend_from_slice(&[4, 1, 1, 5]);
        assert_eq!(h.parse(&reply), Some(Sync::Step2(&[5])));
        // Sync status (8), auth answers (2) and other documents are not sync.
        let mut status = b"\x06room-1".to_vec();
        status.extend_from_slice(&[8, 1]);
        assert_eq!(h.parse(&status), None);
        let other = Framing::Hocuspocus {
            doc: "room-2".into(),
        }
        .update(&[1]);
        assert_eq!(h.parse(&other), None);
        // Awareness is not sync.
        let mut awareness = b"\x06room-1".to_vec();
        awareness.extend_from_slice(&[1, 1, 0]);
        assert_eq!(h.parse(&awareness), None);
    }
}
