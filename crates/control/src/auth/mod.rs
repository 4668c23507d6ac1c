//! Identity: identity-provider JWTs ([`jwt`]), personal email domains
//! ([`domains`]), password hashing off the request path ([`passwords`]).
//! Password and token primitives live in `crate::crypto`; the
//! signed-in-user extractor in `http::extract`.

pub mod domains;
pub mod jwt;
pub mod passwords;
