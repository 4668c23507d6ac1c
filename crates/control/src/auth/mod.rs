//! Identity: identity-provider JWTs ([`jwt`]). Password hashing and tokens
//! live in `crate::crypto`; the signed-in-user extractor in `http::extract`.

pub mod jwt;
