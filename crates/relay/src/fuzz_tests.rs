//! Property-based fuzzing (proptest, stable Rust) of every decoder that reads
//! network bytes: y-websocket frames in the room (client and peer rules),
//! cluster envelopes and saved notices from Redis, the HTTP request head and
//! route of a handshake, and the origin list.
//!
//! Bounded inside `cargo test` (proptest's default of 256 cases each, a few
//! seconds in all); a long run sets the case count:
//! `PROPTEST_CASES=1000000 cargo test -p tandem-relay --release fuzz_`.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact};

use crate::cluster::envelope::{Envelope, Kind, Saved, MAX_PARTS};
use crate::room::{ConnId, Limits, Outgoing, Room};
use crate::transport::handshake;

/// Valid y-websocket messages, to mutate and concatenate.
fn seeds() -> Vec<Vec<u8>> {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("t");
    text.insert(&mut doc.transact_mut(), 0, "seed text");
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let sv = doc.transact().state_vector();
    vec![
        Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1(),
        Message::Sync(SyncMessage::SyncStep2(update.clone())).encode_v1(),
        Message::Sync(SyncMessage::Update(update)).encode_v1(),
        vec![1, 10, 1, 7, 1, 5, b'{', b'"', b'a', b'"', b'}'],
        vec![1, 1, 0],
        vec![3],
        vec![2, 0, 2, b'n', b'o'],
    ]
}

/// A frame: random bytes, or valid messages with a few bytes changed or cut.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    let n = seeds.len();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            proptest::collection::vec(0..n, 1..6),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            any::<usize>(),
        )
            .prop_map(move |(picks, flips, cut)| {
                let mut f: Vec<u8> = picks.iter().flat_map(|i| seeds[*i].clone()).collect();
                for (at, b) in flips {
                    let at = at % f.len();
                    f[at] = b;
                }
                f.truncate(1 + cut % f.len());
                f
            }),
    ]
}

fn room_text(room: &Room) -> String {
    let text = room.doc().get_or_insert_text("t");
    text.get_string(&room.doc().transact())
}

fn typed(s: &str) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("t");
    text.insert(&mut doc.transact_mut(), 0, s);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

/// Hands `out` to the writers' docs (connections 1, 2, 3) and the viewer's
/// (4); fails if a writer is sent an update carrying its own edits.
fn hand_out(out: &[Outgoing], docs: &[yrs::Doc]) -> Result<(), TestCaseError> {
    use yrs::updates::decoder::Decode;
    for o in out {
        for (i, doc) in docs.iter().enumerate() {
            let conn = i as ConnId + 1;
            let Some(msg) = o.message_for(conn) else {
                continue;
            };
            if msg.first() != Some(&0) {
                continue; // awareness
            }
            let mut decoder =
                yrs::updates::decoder::DecoderV1::new(yrs::encoding::read::Cursor::new(msg));
            for m in yrs::sync::MessageReader::new(&mut decoder) {
                let Ok(Message::Sync(SyncMessage::Update(u) | SyncMessage::SyncStep2(u))) = m
                else {
                    continue;
                };
                let update =
                    yrs::Update::decode_v1(&u).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let me = doc.client_id();
                prop_assert!(
                    i == 3 || !update.state_vector_lower().iter().any(|(c, _)| *c == me),
                    "connection {} got its own edits back",
                    conn
                );
                doc.transact_mut()
                    .apply_update(update)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
    }
    Ok(())
}

proptest! {
    /// Updates held back and released at any points (merged runs), with a
    /// hostile writer's frames mixed in: every writer and the viewer end
    /// with the room's text, and no writer is sent its own edits.
    #[test]
    fn fuzz_held_runs_converge_without_echoes(
        steps in proptest::collection::vec((0..3usize, 0..5u8, frame()), 1..48),
    ) {
        let mut room = Room::new();
        let docs: Vec<yrs::Doc> = (0..4).map(|i| yrs::Doc::with_client_id(100 + i)).collect();
        for conn in 1..=3 {
            room.join_client(conn, true, "writer");
        }
        room.join_client(4, false, "viewer");
        room.join_client(5, true, "hostile");
        let mut hostile = true;
        for (who, action, junk) in steps {
            match action {
                0 => room.hold_updates(),
                1 => hand_out(&room.release_updates(), &docs)?,
                2 if hostile => match room.receive(5, &junk) {
                    Ok(out) => hand_out(&out, &docs)?,
                    Err(_) => {
                        hand_out(&room.take_leftover(), &docs)?;
                        hand_out(&room.leave(5), &docs)?;
                        hostile = false;
                    }
                },
                _ => {
                    let doc = &docs[who];
                    let text = doc.get_or_insert_text("t");
                    let mut txn = doc.transact_mut();
                    let before = txn.state_vector();
                    text.insert(&mut txn, 0, "x");
                    let update = txn.encode_state_as_update_v1(&before);
                    drop(txn);
                    let msg = Message::Sync(SyncMessage::Update(update)).encode_v1();
                    let out = room.receive(who as ConnId + 1, &msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    hand_out(&out, &docs)?;
                }
            }
        }
        hand_out(&room.release_updates(), &docs)?;
        let want = room_text(&room);
        for doc in &docs {
            let text = doc.get_or_insert_text("t");
            prop_assert_eq!(&text.get_string(&doc.transact()), &want);
        }
    }

    /// No frame panics the room, takes it down, or loses what it holds.
    #[test]
    fn fuzz_room_frames(frames in proptest::collection::vec(frame(), 1..16)) {
        let mut room = Room::new();
        room.set_limits(Limits { max_document_bytes: Some(64 * 1024), ..Limits::default() });
        room.join(1, true); // another relay node: trusted
        room.join_client(2, true, "writer");
        room.join_client(3, false, "viewer");
        room.receive(2, &typed("stable")).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let conn = [1, 2, 3][i % 3];
            let _ = room.receive(conn, f);
            let _ = room.answer_step2(conn);
        }
        prop_assert!(room_text(&room).contains("stable"));
        let _ = room.sweep_awareness(u64::MAX / 2, 30_000);
        // Still working: a fresh writer's edit applies.
        room.join_client(4, true, "late");
        room.receive(4, &typed("!")).unwrap();
        prop_assert!(room_text(&room).contains('!'));
    }

    /// Envelopes from Redis: any bytes decode or fail cleanly.
    #[test]
    fn fuzz_envelope_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(e) = Envelope::decode(Bytes::from(bytes)) {
            prop_assert!(e.parts.len() <= MAX_PARTS);
            let _ = Saved::from_parts(&e.parts);
        }
    }

    /// Every envelope survives encode → decode, and any cut of it is refused.
    #[test]
    fn fuzz_envelope_round_trip(
        kind in prop_oneof![Just(Kind::Frame), Just(Kind::Hello), Just(Kind::Reply), Just(Kind::Answer), Just(Kind::Saved)],
        from in any::<u64>(),
        to in any::<u64>(),
        seq in any::<u64>(),
        parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..=MAX_PARTS),
        cut in any::<usize>(),
    ) {
        let e = Envelope { kind, from, to, seq, parts: parts.into_iter().map(Bytes::from).collect() };
        let wire = e.encode();
        prop_assert_eq!(Envelope::decode(wire.clone()).unwrap(), e);
        let cut = cut % wire.len();
        prop_assert!(Envelope::decode(wire.slice(..cut)).is_err());
    }

    /// Request heads: any bytes parse or fail cleanly, and routing never panics.
    #[test]
    fn fuzz_handshake_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(Some(head)) = handshake::parse(&BytesMut::from(&bytes[..])) {
            let _ = handshake::route(&head);
        }
    }

    /// Well-formed requests with hostile targets and headers.
    #[test]
    fn fuzz_handshake_requests(
        target in "/[ -~]{0,200}",
        origin in "[ -~]{0,80}",
        upgrade in any::<bool>(),
    ) {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: relay\r\nOrigin: {origin}\r\n{}\r\n",
            if upgrade {
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            } else {
                ""
            }
        );
        if let Ok(Some(head)) = handshake::parse(&BytesMut::from(req.as_bytes())) {
            if let Ok(handshake::Route::Room(room, token, _)) = handshake::route(&head) {
                prop_assert!(room.to_string().len() <= tandem_protocol::room::MAX_ROOM_ID_LEN);
                prop_assert!(token.is_none_or(|t| !t.is_empty()));
            }
        }
    }

    /// Origin lists and origins: parsing and matching never panic, and an
    /// exact entry always allows itself.
    #[test]
    fn fuzz_origins(list in "[ -~]{0,120}", origin in "[ -~]{0,80}") {
        if let Ok(l) = tandem_protocol::origin::OriginList::parse(&list) {
            let _ = l.allows(&origin);
        }
        if let Ok(l) = tandem_protocol::origin::OriginList::parse(&origin) {
            if !l.is_empty() && !origin.contains(',') && !origin.trim().ends_with('*') {
                prop_assert!(l.allows(&origin));
            }
        }
    }
}
