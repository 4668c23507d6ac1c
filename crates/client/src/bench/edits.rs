//! Wire-level edits read from an update's bytes, without a document.
//!
//! A wire-level client never applies what it receives, so it learns which
//! edits a message carries by walking the update's v1 encoding (the
//! structs of each client, then a delete set it ignores): every value of an
//! item's `ContentAny` is one edit, a string of [`STAMP_DIGITS`] digits its
//! send time. One message can carry many edits (Hocuspocus merges the
//! updates of a flush window into one), and some servers send a client its
//! own edits back (y-websocket, Hocuspocus, y-sweet): those are counted
//! apart, as echoes, never as deliveries.

use super::wire::{read_var_bytes, read_var_uint};

/// Digits of the send time a wire-level edit carries.
pub const STAMP_DIGITS: usize = 20;

/// What one update carries for the client `me`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried {
    /// Edits of other clients.
    pub delivered: u64,
    /// This client's own edits, sent back to it.
    pub echoes: u64,
    /// Send times of the delivered edits that carry one.
    pub stamps: Vec<u64>,
}

/// Walks a v1 update; `None` when it is not one (truncated, or a content
/// kind this reader does not know).
pub fn carried(update: &[u8], me: u64) -> Option<Carried> {
    let mut r = Reader(update);
    let mut out = Carried::default();
    for _ in 0..r.varuint()? {
        let structs = r.varuint()?;
        let client = r.varuint()?;
        r.varuint()?; // first clock
        for _ in 0..structs {
            let info = r.byte()?;
            match info & 0x1f {
                // GC and Skip: a length only.
                0 | 10 => {
                    r.varuint()?;
                }
                kind => {
                    r.item_head(info)?;
                    let values = r.content(kind, |stamp| {
                        if client != me {
                            out.stamps.extend(stamp);
                        }
                    })?;
                    if client == me {
                        out.echoes += values;
                    } else {
                        out.delivered += values;
                    }
                }
            }
        }
    }
    Some(out)
}

/// How deep `any` values may nest before an update is refused.
const MAX_DEPTH: usize = 64;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn varuint(&mut self) -> Option<u64> {
        read_var_uint(&mut self.0)
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varuint()?).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        read_var_bytes(&mut self.0)
    }

    /// lib0's signed varint: only skipped.
    fn skip_varint(&mut self) -> Option<()> {
        while self.byte()? & 0x80 != 0 {}
        Some(())
    }

    /// An item's origins and, when it has neither, its parent.
    fn item_head(&mut self, info: u8) -> Option<()> {
        if info & 0x80 != 0 {
            self.varuint()?;
            self.varuint()?;
        }
        if info & 0x40 != 0 {
            self.varuint()?;
            self.varuint()?;
        }
        if info & 0xc0 == 0 {
            if self.varuint()? == 1 {
                self.bytes()?; // a root type's name
            } else {
                self.varuint()?; // the parent item's id
                self.varuint()?;
            }
            if info & 0x20 != 0 {
                self.bytes()?; // the key in a map
            }
        }
        Some(())
    }

    /// Skips an item's content and returns the edits it counts: each value
    /// of `Any` or JSON content, one for any other content (a text insert of
    /// any length), none for a deletion.
    fn content(&mut self, kind: u8, mut stamp: impl FnMut(Option<u64>)) -> Option<u64> {
        match kind {
            1 => {
                self.varuint()?; // deleted: a length, no edit
                Some(0)
            }
            2 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.bytes()?;
                }
                Some(n as u64)
            }
            3..=5 => {
                self.bytes()?;
                Some(1)
            }
            6 => {
                self.bytes()?;
                self.bytes()?;
                Some(1)
            }
            7 => {
                if matches!(self.varuint()?, 3 | 5) {
                    self.bytes()?;
                }
                Some(1)
            }
            8 => {
                let n = self.len()?;
                for _ in 0..n {
                    stamp(self.any(0)?);
                }
                Some(n as u64)
            }
            9 => {
                self.bytes()?;
                self.any(0)?;
                Some(1)
            }
            _ => None,
        }
    }

    /// Skips one lib0 `any` value; a string of [`STAMP_DIGITS`] digits is
    /// returned as the send time it carries. Arrays and maps nest at most
    /// [`MAX_DEPTH`] deep (the reader recurses).
    fn any(&mut self, depth: usize) -> Option<Option<u64>> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.byte()? {
            116 => {
                self.bytes()?;
            }
            117 => {
                for _ in 0..self.len()? {
                    self.any(depth + 1)?;
                }
            }
            118 => {
                for _ in 0..self.len()? {
                    self.bytes()?;
                    self.any(depth + 1)?;
                }
            }
            119 => {
                let s = self.bytes()?;
                if s.len() == STAMP_DIGITS {
                    return Some(std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()));
                }
            }
            120 | 121 | 126 | 127 => {}
            122 | 123 => {
                self.take(8)?;
            }
            124 => {
                self.take(4)?;
            }
            125 => self.skip_varint()?,
            _ => return None,
        }
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use yrs::updates::decoder::Decode;
    use yrs::{Any, Array, Doc, Map, Number, ReadTxn, Text, Transact, Update};

    fn stamp(at: u64) -> Any {
        Any::String(format!("{at:0width$}", width = STAMP_DIGITS).into())
    }

    fn edit(doc: &Doc, at: u64) -> Vec<u8> {
        let edits = doc.get_or_insert_array("e");
        let mut txn = doc.transact_mut();
        edits.push_back(&mut txn, stamp(at));
        txn.encode_update_v1()
    }

    #[test]
    fn one_edit_carries_its_sender_and_send_time() {
        for client in [7, 3_000_000_001] {
            let doc = Doc::with_client_id(client);
            let update = edit(&doc, 123_456_789);
            let theirs = carried(&update, 1).unwrap();
            assert_eq!((theirs.delivered, theirs.echoes), (1, 0));
            assert_eq!(theirs.stamps, vec![123_456_789]);
            let mine = carried(&update, client).unwrap();
            assert_eq!((mine.delivered, mine.echoes), (0, 1));
            assert!(mine.stamps.is_empty());
        }
    }

    #[test]
    fn a_merged_update_carries_every_edit_of_every_client() {
        // What Hocuspocus sends: the updates of a flush window merged into one.
        let (a, b) = (Doc::with_client_id(1), Doc::with_client_id(2));
        let mut updates = Vec::new();
        for i in 0..5 {
            updates.push(edit(&a, 100 + i));
            updates.push(edit(&b, 200 + i));
        }
        let refs: Vec<&[u8]> = updates.iter().map(Vec::as_slice).collect();
        let merged = yrs::merge_updates_v1(refs).unwrap();
        let c = carried(&merged, 2).unwrap();
        assert_eq!((c.delivered, c.echoes), (5, 5));
        let mut stamps = c.stamps;
        stamps.sort_unstable();
        assert_eq!(stamps, vec![100, 101, 102, 103, 104]);
        // The whole state of a document, as a server's sync answer sends it.
        let full = a
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        assert_eq!(carried(&full, 9).unwrap().delivered, 5);
    }

    #[test]
    fn other_contents_are_walked_and_truncation_is_refused() {
        let doc = Doc::with_client_id(5);
        let text = doc.get_or_insert_text("t");
        let map = doc.get_or_insert_map("m");
        let update = {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "typing..");
            map.insert(&mut txn, "k", Any::Number(Number::Float(1.5)));
            map.insert(&mut txn, "n", Any::Number(Number::Int(-3)));
            map.insert(&mut txn, "l", Any::Number(Number::Int(-(1 << 40))));
            map.insert(&mut txn, "o", Any::from(vec![Any::Bool(true), Any::Null]));
            map.insert(&mut txn, "b", Any::Buffer(vec![1u8, 2, 3].into()));
            let inner = HashMap::from([("x".to_string(), Any::Undefined)]);
            map.insert(&mut txn, "m", Any::Map(inner.into()));
            txn.encode_update_v1()
        };
        Update::decode_v1(&update).unwrap();
        // A text insert and six map values: seven items, all of client 5.
        assert_eq!(carried(&update, 5).unwrap().echoes, 7);
        assert_eq!(carried(&update, 1).unwrap().delivered, 7);
        let stamped = edit(&doc, 42);
        for cut in 0..stamped.len() - 1 {
            assert_eq!(carried(&stamped[..cut], 1), None, "cut at {cut}");
        }
        // Arrays nested past the limit are refused, not recursed into.
        let mut deep = vec![1, 1, 5, 0, 0x80 | 8, 5, 0, 1];
        deep.extend(std::iter::repeat_n([117u8, 1], 10_000).flatten());
        deep.push(126);
        assert_eq!(carried(&deep, 1), None);
        let mut shallow = vec![1, 1, 5, 0, 0x80 | 8, 5, 0, 1];
        shallow.extend(std::iter::repeat_n([117u8, 1], 10).flatten());
        shallow.push(126);
        assert_eq!(carried(&shallow, 1).map(|c| c.delivered), Some(1));
    }
}
