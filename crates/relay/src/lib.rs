//! Tandem relay: hosts live Yjs rooms over the y-websocket protocol.
//!
//! Skeleton: the room, transport and control-client modules arrive with the
//! live-collaboration work (issue 3). It depends only on `tandem-protocol`,
//! never on control.

/// Default address the relay listens on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1999";
