//! A pre-check of Yjs v1 updates before yrs decodes them (no dependencies:
//! bytes in, a verdict out; control's snapshot merge uses it, and so can the
//! relay). yrs decodes (and encodes, and drops) nested `Any` values
//! recursively, without a depth limit, so a few bytes per level of nested
//! arrays exhaust a thread's stack — an abort of the whole process that
//! `catch_unwind` cannot stop (a 200 KB update of 100 000 levels does it).
//! [`any_depth`] walks the update's blocks iteratively and measures the
//! deepest `Any` nesting; it reads nothing yrs would not, and is never
//! stricter than yrs: where it cannot follow the bytes, it says so and yrs
//! (which then fails at the same place) decides.

/// Deepest nesting of `Any` values (JSON-like arrays and maps) Tandem
/// accepts in a document; deeper updates are refused before yrs sees them.
pub const MAX_ANY_DEPTH: usize = 1000;

/// What the walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// The deepest `Any` nesting is at most the limit (the value is the depth seen).
    Within(usize),
    /// Some `Any` value nests deeper than the limit.
    TooDeep,
    /// The bytes end or go astray before the blocks do (yrs will refuse them too).
    Unreadable,
}

const HAS_ORIGIN: u8 = 0x80;
const HAS_RIGHT_ORIGIN: u8 = 0x40;
const HAS_PARENT_SUB: u8 = 0x20;
const GC: u8 = 0;
const SKIP: u8 = 10;
const XML_ELEMENT: u8 = 3;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Why a walk stopped early.
enum Stop {
    End,
    TooDeep,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, Stop> {
        let b = *self.bytes.get(self.at).ok_or(Stop::End)?;
        self.at += 1;
        Ok(b)
    }

    /// A lib0 variable-length integer (either signedness: the same continuation bit).
    fn var(&mut self) -> Result<u64, Stop> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift < 64 {
                value |= u64::from(b & 0x7f) << shift;
            }
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Stop::End)
    }

    fn skip(&mut self, n: u64) -> Result<(), Stop> {
        let n = usize::try_from(n).map_err(|_| Stop::End)?;
        let end = self.at.checked_add(n).ok_or(Stop::End)?;
        if end > self.bytes.len() {
            return Err(Stop::End);
        }
        self.at = end;
        Ok(())
    }

    /// A length-prefixed string or buffer.
    fn bytes(&mut self) -> Result<(), Stop> {
        let n = self.var()?;
        self.skip(n)
    }

    /// One `Any` value, iteratively; `deepest` keeps the deepest nesting seen.
    fn any(&mut self, limit: usize, deepest: &mut usize) -> Result<(), Stop> {
        // Open containers: (values still to read, is a map).
        let mut open: Vec<(u64, bool)> = Vec::new();
        loop {
            match self.u8()? {
                127 | 126 | 121 | 120 => {}
                125 => {
                    self.var()?;
                }
                124 => self.skip(4)?,
                123 | 122 => self.skip(8)?,
                119 | 116 => self.bytes()?,
                tag @ (118 | 117) => {
                    let n = self.var()?;
                    if n > 0 {
                        open.push((n, tag == 118));
                        *deepest = (*deepest).max(open.len());
                        if open.len() > limit {
                            return Err(Stop::TooDeep);
                        }
                    }
                }
                _ => return Err(Stop::End),
            }
            // Next: a value of the innermost open container (after its key), or done.
            loop {
                let Some(top) = open.last_mut() else {
                    return Ok(());
                };
                if top.0 == 0 {
                    open.pop();
                    continue;
                }
                top.0 -= 1;
                if top.1 {
                    self.bytes()?;
                }
                break;
            }
        }
    }

    /// The content of an item whose info byte is `info`.
    fn content(&mut self, info: u8, limit: usize, deepest: &mut usize) -> Result<(), Stop> {
        match info & 0b1111 {
            1 => {
                self.var()?;
            }
            2 => {
                // Exactly as yrs reads it: the length as a u32 taken as an
                // i32, then strings while it counts down to -1 (none when
                // the i32 is negative), so both walk on in step.
                let mut remaining = self.var()? as u32 as i32;
                while remaining >= 0 {
                    self.bytes()?;
                    remaining -= 1;
                }
            }
            3..=5 => self.bytes()?,
            6 => {
                self.bytes()?;
                self.bytes()?;
            }
            7 => {
                if self.u8()? == XML_ELEMENT {
                    self.bytes()?;
                }
            }
            8 => {
                let n = self.var()?;
                for _ in 0..n {
                    self.any(limit, deepest)?;
                }
            }
            9 => {
                self.bytes()?;
                self.any(limit, deepest)?;
            }
            _ => return Err(Stop::End),
        }
        Ok(())
    }

    fn blocks(&mut self, limit: usize, deepest: &mut usize) -> Result<(), Stop> {
        let clients = self.var()?;
        for _ in 0..clients {
            let blocks = self.var()?;
            self.var()?; // client
            self.var()?; // clock
            for _ in 0..blocks {
                let info = self.u8()?;
                if info == GC || info == SKIP {
                    self.var()?;
                    continue;
                }
                if info & HAS_ORIGIN != 0 {
                    self.var()?;
                    self.var()?;
                }
                if info & HAS_RIGHT_ORIGIN != 0 {
                    self.var()?;
                    self.var()?;
                }
                if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
                    if self.var()? == 1 {
                        self.bytes()?; // a root type's name
                    } else {
                        self.var()?; // the parent's id
                        self.var()?;
                    }
                    if info & HAS_PARENT_SUB != 0 {
                        self.bytes()?;
                    }
                }
                self.content(info, limit, deepest)?;
            }
        }
        Ok(())
    }
}

/// Measures the deepest `Any` nesting of a v1 update, stopping beyond `limit`.
pub fn any_depth(update: &[u8], limit: usize) -> Walk {
    let mut reader = Reader {
        bytes: update,
        at: 0,
    };
    let mut deepest = 0;
    match reader.blocks(limit, &mut deepest) {
        Ok(()) => Walk::Within(deepest),
        Err(Stop::TooDeep) => Walk::TooDeep,
        Err(Stop::End) => Walk::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{Any, Array, Doc, Map, ReadTxn, StateVector, Text, Transact, Update};

    use super::*;

    fn nested(depth: usize) -> Any {
        let mut v = Any::from("leaf");
        for i in 0..depth {
            v = if i % 2 == 0 {
                Any::from(vec![v, Any::Null])
            } else {
                Any::from(std::collections::HashMap::from([("k".to_string(), v)]))
            };
        }
        v
    }

    /// A document with text, maps, arrays, deletions and one value nested `depth` deep.
    fn update_with(depth: usize) -> Vec<u8> {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("t");
        let map = doc.get_or_insert_map("m");
        let array = doc.get_or_insert_array("a");
        {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "hello world");
            text.remove_range(&mut txn, 2, 3);
            map.insert(&mut txn, "n", 1.5);
            map.insert(&mut txn, "deep", nested(depth));
            array.insert_range(&mut txn, 0, [1, 2, 3]);
            array.insert(&mut txn, 1, true);
        }
        let update = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        update
    }

    #[test]
    fn real_updates_are_measured_exactly() {
        for depth in [0, 1, 5, 40] {
            assert_eq!(
                any_depth(&update_with(depth), 64),
                Walk::Within(depth),
                "{depth}"
            );
        }
        assert_eq!(any_depth(&update_with(40), 39), Walk::TooDeep);
        assert_eq!(any_depth(&[], 64), Walk::Unreadable);
    }

    #[test]
    fn a_json_length_yrs_reads_as_negative_does_not_hide_what_follows() {
        // Item 1: JSON content whose length yrs reads as i32::MIN (no strings).
        let mut update = vec![1, 2, 1, 0, 2, 1, 1, b't', 0x80, 0x80, 0x80, 0x80, 0x08];
        // Item 2: an Any nested 5000 deep.
        update.extend_from_slice(&[8, 1, 1, b't', 1]);
        for _ in 0..5000 {
            update.extend_from_slice(&[117, 1]);
        }
        update.extend_from_slice(&[126, 0]);
        assert_eq!(any_depth(&update, 1000), Walk::TooDeep);
    }

    #[test]
    fn a_few_bytes_per_level_are_caught_without_recursion() {
        // One client, one item in root "t" holding one Any: [[[[…]]]] a million deep.
        let mut bomb = vec![1, 1, 1, 0, 8, 1, 1, b't', 1];
        for _ in 0..1_000_000 {
            bomb.extend_from_slice(&[117, 1]);
        }
        bomb.push(126);
        bomb.extend_from_slice(&[0]);
        assert_eq!(any_depth(&bomb, 1000), Walk::TooDeep);
    }

    /// The walk is never stricter than yrs: on mutated and truncated real
    /// updates, wherever it cannot follow the bytes, yrs refuses them too
    /// (so "let yrs decide" never lets yrs past what was measured).
    #[test]
    fn where_the_walk_gives_up_yrs_refuses_too() {
        let base = [update_with(0), update_with(3), update_with(12)];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut gave_up = 0;
        for _ in 0..20_000 {
            let mut u = base[(next() % 3) as usize].clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % u.len();
                match next() % 3 {
                    0 => u[i] = next() as u8,
                    1 => u.truncate(i.max(1)),
                    _ => u.insert(i, next() as u8),
                }
            }
            if any_depth(&u, 64) == Walk::Unreadable {
                gave_up += 1;
                let read = std::panic::catch_unwind(|| Update::decode_v1(&u).is_ok());
                assert!(
                    !matches!(read, Ok(true)),
                    "yrs reads what the walk could not: {u:?}"
                );
            }
        }
        assert!(
            gave_up > 1000,
            "the mutations exercise the refusals: {gave_up}"
        );
    }
}
