//! JSON bodies of control's identity endpoints: email verification
//! (`/auth/verify-email*`), linking an identity-provider account to a
//! password account (`/auth/link-identity`), org settings and join requests
//! (`/orgs/{id}`, `/orgs/{id}/join-requests`).

use serde::{Deserialize, Serialize};

/// `POST /auth/verify-email`: the token of the emailed link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyEmailRequest {
    pub token: String,
}

/// `POST /auth/verify-email/resend` → 202: where the new link went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerificationSent {
    pub email: String,
    /// When the new link stops working.
    pub expires_at: i64,
}

/// `POST /auth/link-identity` (with `Authorization: Bearer <IdP JWT>`): the
/// password of the existing account with the JWT's email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkIdentityRequest {
    pub password: String,
}

/// How verified addresses of an org's email domain join it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JoinPolicy {
    /// They join as members at once (the seeds' behaviour; the default).
    Auto,
    /// They ask; an owner accepts or refuses.
    Approval,
    /// Nobody joins by domain (they keep a personal org).
    Off,
}

impl JoinPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinPolicy::Auto => "auto",
            JoinPolicy::Approval => "approval",
            JoinPolicy::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<JoinPolicy> {
        [JoinPolicy::Auto, JoinPolicy::Approval, JoinPolicy::Off]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// `GET /orgs/{id}` (members) and the answer of `PATCH /orgs/{id}` (owners).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrgDetails {
    pub id: String,
    pub name: String,
    /// The email domain, or `personal-{userId}` for a solo org.
    pub domain: String,
    /// A solo org (free-mail or unverified address, or a domain that is closed).
    pub personal: bool,
    pub join_policy: JoinPolicy,
}

/// `PATCH /orgs/{id}`: the fields to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateOrg {
    pub join_policy: Option<JoinPolicy>,
    /// A new display name (1..=200 characters, trimmed).
    #[serde(default)]
    pub name: Option<String>,
}

/// A verified user of the org's domain waiting to join (`approval` policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_policy_on_the_wire() {
        for p in [JoinPolicy::Auto, JoinPolicy::Approval, JoinPolicy::Off] {
            let json = serde_json::to_string(&p).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(JoinPolicy::parse(p.as_str()), Some(p));
        }
        assert!(serde_json::from_str::<UpdateOrg>(r#"{"joinPolicy":"sometimes"}"#).is_err());
        assert!(serde_json::from_str::<UpdateOrg>(r#"{"nom":"x"}"#).is_err());
    }
}
