use std::sync::atomic::{AtomicU64, Ordering};

use yrs::{GetString, Text};

use super::*;

/// A client's side of the protocol, with its own doc.
struct Peer {
    doc: Doc,
}

impl Peer {
    fn new() -> Peer {
        Peer { doc: Doc::new() }
    }

    /// A peer with a fixed client id (a reproducible run).
    fn with_id(id: u64) -> Peer {
        Peer {
            doc: Doc::with_client_id(id),
        }
    }

    fn step1(&self) -> Vec<u8> {
        let sv = self.doc.transact().state_vector();
        Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1()
    }

    /// Inserts text and returns the update message the client would send.
    fn type_text(&self, s: &str) -> Vec<u8> {
        let text = self.doc.get_or_insert_text("t");
        let mut txn = self.doc.transact_mut();
        let before = txn.state_vector();
        let len = text.len(&txn);
        text.insert(&mut txn, len, s);
        let update = txn.encode_state_as_update_v1(&before);
        Message::Sync(SyncMessage::Update(update)).encode_v1()
    }

    /// Applies every sync message in a frame the room sent.
    fn receive(&self, frame: &[u8]) {
        let mut decoder = DecoderV1::new(Cursor::new(frame));
        for msg in MessageReader::new(&mut decoder) {
            if let Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) = msg.unwrap()
            {
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(&u).unwrap())
                    .unwrap();
            }
        }
    }

    fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("t");
        text.get_string(&self.doc.transact())
    }
}

/// Delivers outgoing messages to the peers by connection id.
fn deliver(out: &[Outgoing], peers: &[(ConnId, &Peer)]) {
    for o in out {
        for (id, peer) in peers {
            if let Some(msg) = o.message_for(*id) {
                peer.receive(msg);
            }
        }
    }
}

fn room_text(room: &Room) -> String {
    let text = room.doc().get_or_insert_text("t");
    text.get_string(&room.doc().transact())
}

#[test]
fn join_sends_sync_step1_and_step1_is_answered_with_step2() {
    let mut room = Room::new();
    let out = room.join(1, true);
    assert_eq!(out.len(), 1);
    let Outgoing::To(1, msg) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(msg[0..2], [0, 0], "sync / step1");

    room.apply(&{
        let p = Peer::new();
        let m = p.type_text("hello");
        let mut d = DecoderV1::new(Cursor::new(&m));
        let Some(Ok(Message::Sync(SyncMessage::Update(u)))) = MessageReader::new(&mut d).next()
        else {
            panic!()
        };
        u
    })
    .unwrap();
    let late = Peer::new();
    let out = room.receive(1, &late.step1()).unwrap();
    assert!(
        matches!(&out[..], [Outgoing::To(1, m)] if m[0..2] == [0, 1]),
        "answered with step2"
    );
    deliver(&out, &[(1, &late)]);
    assert_eq!(late.text(), "hello");
}

#[test]
fn two_writers_converge() {
    let mut room = Room::new();
    let (a, b) = (Peer::new(), Peer::new());
    room.join_client(1, true, "u1");
    room.join_client(2, true, "u2");
    let out = room.receive(1, &a.type_text("abc")).unwrap();
    assert_eq!(out.len(), 1);
    deliver(&out, &[(1, &a), (2, &b)]);
    let out = room.receive(2, &b.type_text("XYZ")).unwrap();
    deliver(&out, &[(1, &a), (2, &b)]);
    assert_eq!(a.text(), b.text());
    assert_eq!(room_text(&room), a.text());
    assert_eq!(room.stats().updates_applied, 2);
}

#[test]
fn readonly_updates_are_dropped_but_step1_is_answered() {
    let mut room = Room::new();
    let (writer, viewer) = (Peer::new(), Peer::new());
    room.join_client(1, true, "u1");
    room.join(2, false);
    let out = room.receive(2, &viewer.type_text("sneaky")).unwrap();
    assert!(out.is_empty(), "nothing broadcast: {out:?}");
    assert_eq!(room_text(&room), "");
    assert_eq!(room.stats().updates_dropped_readonly, 1);
    // A SyncStep2 from a viewer is an update too.
    let step2 = Message::Sync(SyncMessage::SyncStep2(
        viewer
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default()),
    ))
    .encode_v1();
    assert!(room.receive(2, &step2).unwrap().is_empty());
    assert_eq!(room_text(&room), "");
    // The viewer still syncs what writers wrote.
    deliver(
        &room.receive(1, &writer.type_text("real")).unwrap(),
        &[(1, &writer)],
    );
    let fresh_viewer = Peer::new();
    deliver(
        &room.receive(2, &fresh_viewer.step1()).unwrap(),
        &[(2, &fresh_viewer)],
    );
    assert_eq!(fresh_viewer.text(), "real");
    // Promoted: now its edits apply.
    room.set_writable(2, true);
    room.receive(2, &fresh_viewer.type_text("!")).unwrap();
    assert_eq!(room_text(&room), "real!");
}

fn awareness_frame(client: u64, clock: u32, json: &str) -> Vec<u8> {
    let mut clients = HashMap::new();
    clients.insert(
        ClientID::new(client),
        AwarenessUpdateEntry {
            clock,
            json: Arc::from(json),
        },
    );
    Message::Awareness(AwarenessUpdate { clients }).encode_v1()
}

fn awareness_of(frame: &[u8]) -> Vec<(u64, String)> {
    let mut d = DecoderV1::new(Cursor::new(frame));
    let mut v = Vec::new();
    for m in MessageReader::new(&mut d) {
        if let Message::Awareness(u) = m.unwrap() {
            for (id, e) in u.clients {
                v.push((id.get(), e.json.to_string()));
            }
        }
    }
    v
}

#[test]
fn awareness_is_relayed_replayed_and_removed_on_leave() {
    let mut room = Room::new();
    room.join_client(1, true, "u1");
    room.join(2, false); // viewers share presence too
    let out = room
        .receive(1, &awareness_frame(77, 1, r#"{"user":"a"}"#))
        .unwrap();
    let [Outgoing::Broadcast {
        except: Some(1),
        msg,
    }] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(awareness_of(msg), vec![(77, r#"{"user":"a"}"#.to_string())]);
    // A newcomer gets the current states on join.
    let out = room.join(3, true);
    let states: Vec<_> = out
        .iter()
        .flat_map(|o| match o {
            Outgoing::To(3, m) => awareness_of(m),
            _ => vec![],
        })
        .collect();
    assert_eq!(states, vec![(77, r#"{"user":"a"}"#.to_string())]);
    // Leaving removes its state for the others.
    let out = room.leave(1);
    let [Outgoing::Broadcast { except: None, msg }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(awareness_of(msg), vec![(77, "null".to_string())]);
    assert_eq!(room.connection_count(), 2);
    // Query answers with what is left: nothing of client 77.
    let out = room
        .receive(2, &Message::AwarenessQuery.encode_v1())
        .unwrap();
    let Outgoing::To(2, msg) = &out[0] else {
        panic!()
    };
    assert!(awareness_of(msg).iter().all(|(_, j)| j == "null"));
}

#[test]
fn stale_awareness_is_swept_with_an_injected_clock() {
    let now = Arc::new(AtomicU64::new(1_000));
    let clock = now.clone();
    let mut room = Room::with_clock(move || clock.load(Ordering::SeqCst));
    room.join_client(1, true, "u1");
    room.join_client(2, true, "u2");
    room.receive(1, &awareness_frame(5, 1, r#"{"n":1}"#))
        .unwrap();
    now.store(20_000, Ordering::SeqCst);
    room.receive(2, &awareness_frame(6, 1, r#"{"n":2}"#))
        .unwrap();
    assert!(
        room.sweep_awareness(20_000, 30_000).is_empty(),
        "nothing stale yet"
    );
    now.store(35_000, Ordering::SeqCst);
    let out = room.sweep_awareness(35_000, 30_000);
    let [Outgoing::Broadcast { msg, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        awareness_of(msg),
        vec![(5, "null".to_string())],
        "only client 5 went stale"
    );
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An awareness message built by hand, so any client id can be sent.
fn raw_awareness(client: u64) -> Vec<u8> {
    let mut payload = vec![1]; // one entry
    varint(client, &mut payload);
    payload.extend([1, 2, b'{', b'}']); // clock 1, json "{}"
    let mut frame = vec![1];
    varint(payload.len() as u64, &mut frame);
    frame.extend(payload);
    frame
}

#[test]
fn malformed_frames_are_refused_and_the_room_survives() {
    let mut room = Room::new();
    let a = Peer::new();
    room.join_client(1, true, "u1");
    room.receive(1, &a.type_text("keep")).unwrap();
    let bad: Vec<Vec<u8>> = vec![
        vec![0, 9],                   // unknown sync step
        vec![0, 2, 200],              // update length past the end
        vec![0, 2, 3, 255, 255, 255], // garbage update
        vec![1, 5, 1, 2],             // truncated awareness
        vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ], // varint overflow
        raw_awareness(1 << 60),       // client id beyond 53 bits (a debug assertion in yrs)
    ];
    for frame in &bad {
        let _ = room.receive(1, frame);
    }
    assert!(room.receive(1, &[0, 9]).is_err());
    assert_eq!(room_text(&room), "keep");
    assert_eq!(
        room.receive(9, &a.step1()),
        Err(RoomError::UnknownConnection)
    );
    // Still fully working.
    room.receive(1, &a.type_text("!")).unwrap();
    assert_eq!(room_text(&room), "keep!");
}

/// Random and mutated frames never panic the room nor corrupt what it holds.
#[test]
fn random_frames_never_take_the_room_down() {
    let mut room = Room::new();
    let writer = Peer::with_id(1001);
    room.join_client(1, true, "u1");
    room.join_client(2, true, "u2");
    room.receive(1, &writer.type_text("stable")).unwrap();
    let valid = [
        writer.type_text("x"),
        awareness_frame(3, 1, "{}"),
        writer.step1(),
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..20_000 {
        let frame: Vec<u8> = if i % 2 == 0 {
            let len = (next() % 64) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            // A valid frame with a few bytes flipped or cut short.
            let mut f = valid[(next() % 3) as usize].clone();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % f.len();
                f[at] = next() as u8;
            }
            f.truncate(1 + (next() as usize) % f.len());
            f
        };
        let _ = room.receive(2, &frame);
    }
    assert!(room_text(&room).starts_with("stable"));
    // A writer's later edit still lands. (It comes from a client id the
    // flood never used: damaged copies of `writer`'s own update can claim
    // its next clocks, and yrs then takes its real edit for one it has —
    // any peer with write access can forge another client's ids.)
    let late = Peer::with_id(2002);
    room.receive(1, &late.type_text("!")).unwrap();
    assert!(room_text(&room).contains('!'));
}

#[test]
fn a_keepalive_from_a_client_is_not_broadcast() {
    let mut room = Room::new();
    room.join_client(1, true, "u1");
    room.join_client(2, true, "u2");
    // An awareness update with no entries: what clients send to stay alive.
    assert_eq!(room.receive(1, KEEPALIVE).unwrap(), vec![]);
    // A real awareness change still goes out.
    let out = room.receive(1, &awareness_frame(9, 1, "{}")).unwrap();
    assert_eq!(out.len(), 1);
}

/// A room with a big document, for the client rules below.
fn room_with_text(len: usize) -> (Room, Peer) {
    let mut room = Room::new();
    let writer = Peer::new();
    room.join_client(1, true, "writer");
    room.receive(1, &writer.type_text(&"x".repeat(len)))
        .unwrap();
    (room, writer)
}

#[test]
fn a_frame_with_too_many_messages_is_refused_before_any_work() {
    let (mut room, _) = room_with_text(10);
    room.join_client(2, false, "viewer");
    let step1 = Peer::new().step1();
    let frame: Vec<u8> = step1
        .iter()
        .copied()
        .cycle()
        .take(step1.len() * 65)
        .collect();
    assert_eq!(room.receive(2, &frame), Err(RoomError::TooManyMessages(64)));
    assert!(!room.has_pending_step2(2), "nothing was done");
    // 64 are fine, and are answered once.
    let frame: Vec<u8> = step1
        .iter()
        .copied()
        .cycle()
        .take(step1.len() * 64)
        .collect();
    assert_eq!(room.receive(2, &frame).unwrap(), vec![]);
    assert_eq!(room.stats().step2_coalesced, 63);
    let fresh = Peer::new();
    fresh.receive(&room.answer_step2(2).unwrap());
    assert_eq!(fresh.text().len(), 10);
    assert_eq!(room.answer_step2(2), None, "one answer for all of them");
}

#[test]
fn coalesced_step1s_get_what_every_one_of_them_lacks() {
    let (mut room, writer) = room_with_text(5);
    room.join_client(2, true, "b");
    // One SyncStep1 from a client that has the text, one from an empty one.
    room.receive(2, &writer.step1()).unwrap();
    let empty = Peer::new();
    room.receive(2, &empty.step1()).unwrap();
    empty.receive(&room.answer_step2(2).unwrap());
    assert_eq!(empty.text(), "xxxxx");
}

#[test]
fn an_update_past_the_document_limit_is_refused_and_nothing_changes() {
    let (mut room, writer) = room_with_text(100);
    let mut limits = room.limits().clone();
    limits.max_document_bytes = Some(4096);
    room.set_limits(limits);
    // Small edits fit.
    room.receive(1, &writer.type_text("ok")).unwrap();
    let before = room_text(&room);
    let big = writer.type_text(&"y".repeat(5000));
    assert_eq!(
        room.receive(1, &big),
        Err(RoomError::DocumentTooLarge(4096))
    );
    assert_eq!(room_text(&room), before, "not applied");
    // Another writer's small edit still goes in.
    let other = Peer::new();
    room.join_client(2, true, "other");
    room.receive(2, &other.type_text("z")).unwrap();
    assert!(room_text(&room).contains('z'));
    room.recount();
    assert!(room.size_bound() <= 4096);
}

#[test]
fn a_size_bound_from_many_small_edits_is_recounted_not_trusted() {
    let mut room = Room::new();
    let writer = Peer::new();
    room.join_client(1, true, "w");
    room.set_limits(Limits {
        max_document_bytes: Some(2048),
        ..Limits::default()
    });
    // Each one-letter update costs ~20 bytes on the wire but one in the merged document.
    for _ in 0..400 {
        room.receive(1, &writer.type_text("a")).unwrap();
    }
    assert_eq!(room_text(&room).len(), 400);
}

#[test]
fn awareness_ids_belong_to_the_connection_that_announced_them() {
    let mut room = Room::new();
    room.join_client(1, true, "alice");
    room.join_client(2, true, "mallory");
    room.receive(1, &awareness_frame(10, 1, r#"{"u":"alice"}"#))
        .unwrap();
    // Mallory cannot overwrite nor clear Alice's state.
    let out = room
        .receive(2, &awareness_frame(10, 2, r#"{"u":"fake"}"#))
        .unwrap();
    assert!(out.is_empty(), "{out:?}");
    let out = room.receive(2, &awareness_frame(10, 3, "null")).unwrap();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(room.stats().awareness_refused, 2);
    let joined = room.join_client(3, true, "carol");
    let states: Vec<_> = joined
        .iter()
        .flat_map(|o| match o {
            Outgoing::To(3, m) => awareness_of(m),
            _ => vec![],
        })
        .collect();
    assert_eq!(states, vec![(10, r#"{"u":"alice"}"#.to_string())]);
    // Alice herself may clear it.
    let out = room.receive(1, &awareness_frame(10, 2, "null")).unwrap();
    assert_eq!(out.len(), 1);
    // The same user on a new connection (a reconnect) takes her id over.
    room.receive(1, &awareness_frame(11, 1, "{}")).unwrap();
    room.join_client(4, true, "alice");
    let out = room
        .receive(4, &awareness_frame(11, 2, r#"{"again":1}"#))
        .unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn awareness_caps_and_null_states() {
    let mut room = Room::with_clock(|| 1_000u64);
    room.join_client(1, true, "a");
    room.join_client(2, true, "b");
    // A null state for an id nobody holds is dropped, not kept.
    assert!(room
        .receive(1, &awareness_frame(50, 1, "null"))
        .unwrap()
        .is_empty());
    assert!(room.awareness.meta(ClientID::new(50)).is_none());
    // At most 4 ids per connection.
    for id in 1..=4 {
        assert_eq!(
            room.receive(1, &awareness_frame(id, 1, "{}"))
                .unwrap()
                .len(),
            1
        );
    }
    assert!(room
        .receive(1, &awareness_frame(5, 1, "{}"))
        .unwrap()
        .is_empty());
    // A state over 16 KiB is dropped.
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(17 * 1024));
    assert!(room
        .receive(2, &awareness_frame(20, 1, &big))
        .unwrap()
        .is_empty());
    // At most 60 awareness messages a second (the clock does not move here).
    let mut sent = 0;
    for clock in 2..200 {
        if !room
            .receive(2, &awareness_frame(21, clock, "{}"))
            .unwrap()
            .is_empty()
        {
            sent += 1;
        }
    }
    assert_eq!(sent, 59, "one was used by the oversized state");
}

#[test]
fn what_a_refused_frame_already_changed_still_goes_to_the_others() {
    let (mut room, writer) = room_with_text(10);
    room.set_limits(Limits {
        max_document_bytes: Some(4096),
        ..Limits::default()
    });
    room.join_client(2, true, "other");
    let mut frame = writer.type_text("ok");
    frame.extend(writer.type_text(&"y".repeat(5000)));
    assert_eq!(
        room.receive(1, &frame),
        Err(RoomError::DocumentTooLarge(4096))
    );
    let other = Peer::new();
    other.receive(&room.answer_step2(2).unwrap_or_default());
    let left = room.take_leftover();
    assert_eq!(left.len(), 1, "{left:?}");
    deliver(&left, &[(2, &other)]);
    assert!(room_text(&room).ends_with("ok"));
    assert!(room.take_leftover().is_empty());
}

/// An update nesting a value a million levels deep (two bytes a level) is
/// refused before yrs decodes it: yrs would recurse until the stack overflows,
/// aborting the whole relay process.
#[test]
fn deeply_nested_values_are_refused_before_decoding() {
    let mut room = Room::new();
    let a = Peer::new();
    room.join_client(1, true, "u1");
    room.receive(1, &a.type_text("keep")).unwrap();
    // One client, one item in root "t" holding one Any: [[[[…]]]].
    let mut bomb = vec![1, 1, 1, 0, 8, 1, 1, b't', 1];
    for _ in 0..1_000_000 {
        bomb.extend_from_slice(&[117, 1]);
    }
    bomb.extend_from_slice(&[126, 0]);
    let frame = Message::Sync(SyncMessage::Update(bomb)).encode_v1();
    assert!(matches!(
        room.receive(1, &frame),
        Err(RoomError::Malformed(m)) if m.contains("nested deeper")
    ));
    room.receive(1, &a.type_text("!")).unwrap();
    assert_eq!(room_text(&room), "keep!");
}

#[test]
fn a_loaded_document_is_sent_as_stored_until_it_changes() {
    let author = Peer::new();
    author.type_text("stored text");
    let stored = author
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let mut room = Room::new();
    room.load(&stored).unwrap();
    assert_eq!(room_text(&room), "stored text");

    // A client with an empty document gets the stored bytes as they are.
    let fresh = Peer::new();
    room.join_client(1, true, "u1");
    room.receive(1, &fresh.step1()).unwrap();
    let answer = room.answer_step2(1).unwrap();
    let expected = Message::Sync(SyncMessage::SyncStep2(stored.clone())).encode_v1();
    assert_eq!(&answer[..], &expected[..]);
    fresh.receive(&answer);
    assert_eq!(fresh.text(), "stored text");

    // Once the document changes, joiners get the current document.
    let edit = fresh.type_text("!");
    room.receive(1, &edit).unwrap();
    let late = Peer::new();
    room.join_client(2, true, "u2");
    room.receive(2, &late.step1()).unwrap();
    let answer = room.answer_step2(2).unwrap();
    assert_ne!(&answer[..], &expected[..]);
    late.receive(&answer);
    assert_eq!(late.text(), "stored text!");
}

#[test]
fn a_load_in_two_steps_answers_empty_joiners_before_the_document_is_in_place() {
    let author = Peer::new();
    author.type_text("stored text");
    let stored = author
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let mut room = Room::new();
    room.begin_load(&stored);
    room.join_client_quiet(1, true, "u1");
    // Before integration: the document is still empty, yet an empty
    // joiner's SyncStep1 is answered with the stored bytes.
    assert_eq!(room_text(&room), "");
    let fresh = Peer::new();
    let answer = room.pristine_answer(1, &fresh.step1()).unwrap();
    fresh.receive(&answer);
    assert_eq!(fresh.text(), "stored text");
    // Anything else (an edit, a non-empty SyncStep1) is not answered here.
    let held = fresh.type_text("!");
    assert!(room.pristine_answer(1, &held).is_none());
    assert!(room.pristine_answer(1, &fresh.step1()).is_none());
    // After integration the room holds the state, and the held edit applies.
    let doc = Room::integrate(&stored).unwrap();
    room.finish_load(Ok(doc), stored.len());
    assert_eq!(room_text(&room), "stored text");
    room.receive(1, &held).unwrap();
    assert_eq!(room_text(&room), "stored text!");
    assert!(room.pristine_answer(1, &Peer::new().step1()).is_none());
    // A state that does not decode: nothing stored is offered any more.
    let mut broken = Room::new();
    broken.begin_load(&[1, 2, 3]);
    broken.join_client_quiet(1, true, "u1");
    let loaded = Room::integrate(&[1, 2, 3]);
    assert!(loaded.is_err());
    broken.finish_load(loaded, 3);
    assert!(broken.pristine_answer(1, &Peer::new().step1()).is_none());
}

/// The update messages of `out` for `conn`, decoded to the clients whose
/// edits they carry.
fn update_senders_for(out: &[Outgoing], conn: ConnId) -> Vec<Vec<u64>> {
    let mut got = Vec::new();
    for o in out {
        let Some(msg) = o.message_for(conn) else {
            continue;
        };
        let mut d = DecoderV1::new(Cursor::new(msg));
        let Some(Ok(Message::Sync(SyncMessage::Update(u)))) = MessageReader::new(&mut d).next()
        else {
            panic!("not an update: {msg:?}")
        };
        let sv = Update::decode_v1(&u).unwrap().state_vector_lower();
        let mut clients: Vec<u64> = sv.iter().map(|(c, _)| c.get()).collect();
        clients.sort_unstable();
        got.push(clients);
    }
    got
}

#[test]
fn held_updates_of_several_senders_go_out_merged_and_never_back_to_their_senders() {
    let mut room = Room::new();
    let (a, b, c) = (Peer::with_id(101), Peer::with_id(102), Peer::new());
    room.join_client(1, true, "u1");
    room.join_client(2, true, "u2");
    room.join_client(3, false, "u3");
    room.hold_updates();
    let frames = [
        (1, a.type_text("a1")),
        (2, b.type_text("b1")),
        (1, a.type_text("a2")),
    ];
    for (conn, frame) in &frames {
        assert_eq!(room.receive(*conn, frame).unwrap(), vec![], "held back");
    }
    let out = room.release_updates();
    assert_eq!(room.stats().updates_merged, 3);
    // The watcher: one message with everyone's edits.
    assert_eq!(update_senders_for(&out, 3), vec![vec![101, 102]]);
    // Each sender: the others' updates as they came, none of its own.
    assert_eq!(update_senders_for(&out, 1), vec![vec![102]]);
    assert_eq!(update_senders_for(&out, 2), vec![vec![101], vec![101]]);
    deliver(&out, &[(1, &a), (2, &b), (3, &c)]);
    assert_eq!(a.text(), room_text(&room));
    assert_eq!(b.text(), room_text(&room));
    assert_eq!(c.text(), room_text(&room));
    assert_eq!(room_text(&room).len(), 6);
    // Released: the next update goes out on its own again.
    let out = room.receive(2, &b.type_text("b2")).unwrap();
    assert!(
        matches!(
            &out[..],
            [Outgoing::Broadcast {
                except: Some(2),
                ..
            }]
        ),
        "{out:?}"
    );
}

#[test]
fn one_senders_held_updates_are_one_broadcast_and_long_runs_go_in_pieces() {
    let mut room = Room::new();
    let (a, b) = (Peer::with_id(7), Peer::new());
    room.join_client(1, true, "u1");
    room.join_client(2, true, "u2");
    room.hold_updates();
    for i in 0..(MERGE_MAX_UPDATES * 2 + 2) {
        room.receive(1, &a.type_text(&format!("{}", i % 10)))
            .unwrap();
    }
    let out = room.release_updates();
    assert_eq!(out.len(), 3, "pieces of 64, 64 and 2");
    for o in &out {
        assert!(
            matches!(
                o,
                Outgoing::Broadcast {
                    except: Some(1),
                    ..
                }
            ),
            "{o:?}"
        );
    }
    deliver(&out, &[(1, &a), (2, &b)]);
    assert_eq!(b.text(), a.text());
    // Updates past the byte cap are not merged: each goes as it came.
    room.hold_updates();
    let big = "x".repeat(MERGE_MAX_BYTES);
    room.receive(1, &a.type_text(&big)).unwrap();
    room.receive(1, &a.type_text(&big)).unwrap();
    let merged = room.stats().updates_merged;
    let out = room.release_updates();
    assert_eq!(out.len(), 2);
    assert_eq!(room.stats().updates_merged, merged, "nothing merged");
    deliver(&out, &[(1, &a), (2, &b)]);
    assert_eq!(b.text(), a.text());
    // Nothing held: nothing to release.
    assert!(room.release_updates().is_empty());
}

#[test]
fn a_panic_inside_yrs_keeps_what_earlier_messages_of_the_frame_changed() {
    let mut room = Room::new();
    let (a, b) = (Peer::new(), Peer::new());
    room.join_client(1, true, "u1");
    room.join_client(2, true, "u2");
    // One struct of a client id past 2^53: yrs panics decoding it, which it
    // does while applying, after the frame's first update was applied.
    let mut bad = vec![1, 1];
    bad.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    bad.extend([0, 0, 1, 0]);
    let mut frame = a.type_text("kept");
    frame.extend_from_slice(&update_message(&bad));
    assert!(room.receive(1, &frame).is_err());
    assert_eq!(room_text(&room), "kept");
    deliver(&room.take_leftover(), &[(2, &b)]);
    assert_eq!(b.text(), "kept", "the applied update still goes out");
}

#[test]
fn held_updates_that_carry_the_same_struct_twice_go_out_as_they_came() {
    let mut room = Room::new();
    let b = Peer::new();
    room.join_client(1, true, "u1");
    room.join_client(2, true, "u2");
    // Two docs with one client id: their first three structs collide.
    let (x, y) = (Peer::with_id(9), Peer::with_id(9));
    room.hold_updates();
    room.receive(1, &x.type_text("aaa")).unwrap();
    room.receive(1, &y.type_text("bbbbbb")).unwrap();
    let merged = room.stats().updates_merged;
    let out = room.release_updates();
    assert_eq!(room.stats().updates_merged, merged, "not merged");
    deliver(&out, &[(2, &b)]);
    assert_eq!(b.text(), room_text(&room));
}
