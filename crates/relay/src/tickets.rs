//! Resume tickets: a short-lived credential the relay issues to a connected
//! client that asked for it (`?resume=1`), so that after a drop (a relay
//! restart, a drain, a network blip) it can rejoin the same room with
//! `?ticket=` instead of a fresh one-time token from control.
//!
//! A ticket is `rt1.<claims>.<mac>`, both parts base64url without padding:
//! the claims are JSON `{u, n, r, o, e}` (user id, user name, room, role,
//! expiry in Unix seconds), the MAC is HMAC-SHA256 over `rt1.<claims>` with a
//! key derived from `TANDEM_RELAY_SECRET`. Any node sharing the secret
//! accepts it; rotating the secret voids every ticket.
//!
//! A ticket join never trusts the ticket alone for access: the relay asks
//! control's `check-access` for the user and room (a read, where verify
//! consumes a token: a write), and takes the role control answers. So a
//! revocation is honoured by the next ticket join whatever the ticket says;
//! the ticket only saves the client the token round trip and control the
//! token write. See `proto-docs/security.md` ("Resume tickets").
//!
//! Tickets are secrets: never logged; MACs are compared in constant time
//! (`ring::hmac::verify`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use ring::hmac;
use serde::{Deserialize, Serialize};
use tandem_protocol::collab::resume::{TicketMessage, MAX_TICKET_LEN, MESSAGE_RESUME_TICKET};
use tandem_protocol::http::Role;
use tandem_protocol::RoomId;

use tandem_protocol::collab::close;

use crate::control_client::ControlError;
use crate::hub::Member;
use crate::server::Shared;

const PREFIX: &str = "rt1.";
/// Key derivation label: the relay secret also authenticates the relay to
/// control; the ticket key is a separate key derived from it.
const KEY_LABEL: &[u8] = b"tandem resume ticket v1";

/// What a ticket says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub u: String,
    /// User name (shown to others in awareness tooling).
    pub n: String,
    /// Room id.
    pub r: String,
    /// Role when issued (the join takes control's current role instead).
    pub o: Role,
    /// Expiry, Unix seconds.
    pub e: u64,
}

/// Why a ticket was refused (never told to the client, which only sees
/// close 4401; counted and logged at debug without the ticket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    BadMac,
    Expired,
    OtherRoom,
    NoAccess,
    Disabled,
}

/// Issues and opens tickets (one per relay node).
pub struct Tickets {
    key: hmac::Key,
    life: Duration,
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Tickets {
    /// `None` when tickets are off (`life_secs` 0).
    pub fn new(relay_secret: &str, life_secs: u64) -> Option<Tickets> {
        if life_secs == 0 {
            return None;
        }
        let root = hmac::Key::new(hmac::HMAC_SHA256, relay_secret.as_bytes());
        let derived = hmac::sign(&root, KEY_LABEL);
        Some(Tickets {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            life: Duration::from_secs(life_secs),
        })
    }

    pub fn life(&self) -> Duration {
        self.life
    }

    /// A ticket for `member` in `room`, valid for the configured life from `now`.
    pub fn issue(&self, member: &Member, room: &RoomId, now: SystemTime) -> String {
        let claims = Claims {
            u: member.user_id.clone(),
            n: member.user_name.clone(),
            r: room.to_string(),
            o: member.role,
            e: unix(now) + self.life.as_secs(),
        };
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let mut out = String::with_capacity(PREFIX.len() + json.len() * 4 / 3 + 50);
        out.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&json, &mut out);
        let tag = hmac::sign(&self.key, out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut out);
        out
    }

    /// Checks the MAC, expiry and room of `ticket` (not access: the caller
    /// asks control).
    pub fn open(&self, ticket: &str, room: &RoomId, now: SystemTime) -> Result<Claims, Refusal> {
        if ticket.len() > MAX_TICKET_LEN || !ticket.starts_with(PREFIX) {
            return Err(Refusal::Malformed);
        }
        let (signed, mac) = ticket.rsplit_once('.').ok_or(Refusal::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| Refusal::Malformed)?;
        hmac::verify(&self.key, signed.as_bytes(), &mac).map_err(|_| Refusal::BadMac)?;
        let body = URL_SAFE_NO_PAD
            .decode(&signed[PREFIX.len()..])
            .map_err(|_| Refusal::Malformed)?;
        let claims: Claims = serde_json::from_slice(&body).map_err(|_| Refusal::Malformed)?;
        if claims.e <= unix(now) {
            return Err(Refusal::Expired);
        }
        if claims.r != room.to_string() {
            return Err(Refusal::OtherRoom);
        }
        Ok(claims)
    }

    /// The y-websocket message carrying a fresh ticket:
    /// `[100][varString {"ticket","expiresInSecs"}]`.
    pub fn message(&self, member: &Member, room: &RoomId, now: SystemTime) -> Bytes {
        let json = serde_json::to_vec(&TicketMessage {
            ticket: self.issue(member, room, now),
            expires_in_secs: self.life.as_secs(),
        })
        .unwrap_or_default();
        let mut out = Vec::with_capacity(json.len() + 4);
        out.push(MESSAGE_RESUME_TICKET);
        write_var(&mut out, json.len());
        out.extend_from_slice(&json);
        Bytes::from(out)
    }
}

fn write_var(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A connection that asked for tickets: who to issue them for, and when the
/// next one is due (every half life, checked at each write and keepalive).
pub struct Resume {
    member: Member,
    due: Instant,
}

impl Resume {
    pub fn new(member: Member, tickets: &Tickets, now: Instant) -> Box<Resume> {
        Box::new(Resume {
            member,
            due: now + tickets.life / 2,
        })
    }

    /// The first ticket, sent right after the upgrade.
    pub fn first(&self, tickets: &Tickets, room: &RoomId) -> Bytes {
        tickets.message(&self.member, room, SystemTime::now())
    }
}

/// A fresh ticket message when one is due on this connection.
pub fn refresh(
    resume: &mut Option<Box<Resume>>,
    tickets: Option<&Tickets>,
    room: &RoomId,
    now: Instant,
) -> Option<Bytes> {
    let (resume, tickets) = (resume.as_mut()?, tickets?);
    if now < resume.due {
        return None;
    }
    resume.due = now + tickets.life / 2;
    Some(tickets.message(&resume.member, room, SystemTime::now()))
}

/// Why a ticket join did not get in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// Close 4401 after the upgrade; the client gets a fresh token.
    Refused,
    /// Control did not answer the access check: 503 before the upgrade,
    /// like a token verify (the client keeps its ticket and retries).
    Unavailable,
}

/// Lets a ticket in: MAC, expiry and room checked here, then access (and
/// the current role) asked of control with `check-access`, never the
/// ticket's word alone.
pub async fn admit(shared: &Shared, ticket: &str, room: &RoomId) -> Result<Member, AdmitError> {
    let refused = |why: Refusal| {
        shared.metrics.tickets_refused.inc();
        tracing::debug!(room = %room, why = ?why, "resume ticket refused");
        AdmitError::Refused
    };
    let tickets = shared
        .tickets
        .as_ref()
        .ok_or_else(|| refused(Refusal::Disabled))?;
    let claims = tickets
        .open(ticket, room, SystemTime::now())
        .map_err(refused)?;
    let started = Instant::now();
    let checked = shared.control.access(room, &claims.u).await;
    shared
        .metrics
        .check_access_seconds
        .observe(started.elapsed().as_secs_f64());
    let role = match checked {
        Ok(role) => role,
        Err(ControlError::Unavailable(why)) => {
            tracing::warn!(room = %room, error = %why, "control unreachable during a ticket join");
            return Err(AdmitError::Unavailable);
        }
        Err(_) => None,
    };
    match role {
        Some(role) => {
            shared.metrics.ticket_joins.inc();
            Ok(Member {
                user_id: claims.u,
                user_name: claims.n,
                role,
            })
        }
        None => Err(refused(Refusal::NoAccess)),
    }
}

/// Closes an upgraded socket whose ticket was refused: 4401
/// `TICKET_REFUSED`, before any room message.
pub async fn refuse(ws: &mut crate::transport::conn::Ws) {
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        ws.close(Some((close::TICKET_REFUSED, close::REASON_TICKET_REFUSED))),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while ws.next().await.is_some() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn member() -> Member {
        Member {
            user_id: "u1".into(),
            user_name: "Ann".into(),
            role: Role::Editor,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = Tickets::new("secret", 60).unwrap();
        let room = RoomId::parse("doc-abc").unwrap();
        let other = RoomId::parse("doc-abd").unwrap();
        let now = SystemTime::now();
        let ticket = t.issue(&member(), &room, now);
        let c = t.open(&ticket, &room, now).unwrap();
        assert_eq!((c.u.as_str(), c.o), ("u1", Role::Editor));
        assert_eq!(t.open(&ticket, &other, now), Err(Refusal::OtherRoom));
        let later = now + Duration::from_secs(61);
        assert_eq!(t.open(&ticket, &room, later), Err(Refusal::Expired));
        // Another secret (rotation, another deployment).
        let rotated = Tickets::new("secret2", 60).unwrap();
        assert_eq!(rotated.open(&ticket, &room, now), Err(Refusal::BadMac));
        // Tampered claims: another user, same MAC.
        let (_, mac) = ticket.rsplit_once('.').unwrap();
        let forged = Claims {
            u: "u2".into(),
            ..c.clone()
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{PREFIX}{body}.{mac}");
        assert_eq!(t.open(&tampered, &room, now), Err(Refusal::BadMac));
        for bad in ["", "rt1.", "rt1.a.b", "x.y.z", &"a".repeat(2000)] {
            assert!(t.open(bad, &room, now).is_err(), "{bad}");
        }
        assert!(Tickets::new("secret", 0).is_none());
    }

    #[test]
    fn message_is_a_custom_y_message() {
        use yrs::updates::decoder::{Decode, DecoderV1};
        let t = Tickets::new("secret", 60).unwrap();
        let room = RoomId::parse("doc-abc").unwrap();
        let bytes = t.message(&member(), &room, SystemTime::now());
        let mut d = DecoderV1::from(bytes.as_ref());
        match yrs::sync::Message::decode(&mut d).unwrap() {
            yrs::sync::Message::Custom(tag, data) => {
                assert_eq!(tag, MESSAGE_RESUME_TICKET);
                let m: TicketMessage = serde_json::from_slice(&data).unwrap();
                assert_eq!(m.expires_in_secs, 60);
                assert!(t.open(&m.ticket, &room, SystemTime::now()).is_ok());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refresh_every_half_life() {
        let t = Tickets::new("secret", 60).unwrap();
        let room = RoomId::parse("doc-abc").unwrap();
        let now = Instant::now();
        let mut r = Some(Resume::new(member(), &t, now));
        assert!(refresh(&mut r, Some(&t), &room, now).is_none());
        let half = now + Duration::from_secs(30);
        assert!(refresh(&mut r, Some(&t), &room, half).is_some());
        assert!(refresh(&mut r, Some(&t), &room, half).is_none());
        assert!(refresh(&mut None, Some(&t), &room, half).is_none());
    }
}
