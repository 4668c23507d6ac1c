//! Usage events (model, input/output tokens) per user and org, and their
//! totals by UTC day.

use std::collections::BTreeMap;

use diesel::prelude::*;
use tandem_protocol::chat::UsageTotal;

use super::now_ms;
use crate::crypto;
use crate::db::schema::usage_events;
use crate::db::DbConnection;
use crate::error::ApiError;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = usage_events)]
pub struct UsageRow {
    pub id: String,
    pub user_id: String,
    pub org_id: String,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub day: i64,
    pub created_at: i64,
}

#[allow(clippy::too_many_arguments)]
pub fn record(
    conn: &mut DbConnection,
    user_id: &str,
    org_id: &str,
    conversation_id: Option<&str>,
    message_id: Option<&str>,
    model: &str,
    input_tokens: i64,
    output_tokens: i64,
) -> Result<UsageRow, ApiError> {
    let now = now_ms();
    let row = UsageRow {
        id: crypto::new_id(),
        user_id: user_id.to_string(),
        org_id: org_id.to_string(),
        conversation_id: conversation_id.map(str::to_string),
        message_id: message_id.map(str::to_string),
        model: model.to_string(),
        input_tokens,
        output_tokens,
        day: now.div_euclid(DAY_MS),
        created_at: now,
    };
    // At most one record per message (a unique index): a repeat is a 409.
    diesel::insert_into(usage_events::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| {
            ApiError::conflict_if_unique(e, "usage of this message is already recorded")
        })?;
    Ok(row)
}

/// Whose totals.
pub enum Scope<'a> {
    User(&'a str),
    /// An org's, broken down by user.
    Org(&'a str),
}

/// Totals of the last `days` UTC days (today included), by day, user (for
/// an org) and model; newest day first.
pub fn totals(
    conn: &mut DbConnection,
    scope: Scope<'_>,
    days: i64,
) -> Result<Vec<UsageTotal>, ApiError> {
    let since = now_ms().div_euclid(DAY_MS) - (days - 1);
    let mut query = usage_events::table
        .filter(usage_events::day.ge(since))
        .select((
            usage_events::day,
            usage_events::user_id,
            usage_events::model,
            usage_events::input_tokens,
            usage_events::output_tokens,
        ))
        .into_boxed();
    let by_user = match scope {
        Scope::User(u) => {
            query = query.filter(usage_events::user_id.eq(u.to_string()));
            false
        }
        Scope::Org(o) => {
            query = query.filter(usage_events::org_id.eq(o.to_string()));
            true
        }
    };
    let rows: Vec<(i64, String, String, i64, i64)> = query.load(conn)?;
    // Summed here rather than with GROUP BY: one code path on both backends
    // (SUM's result type differs between them), and a day's events are few.
    // (−day, user, model) → (input, output, events); −day sorts newest first.
    type Key = (i64, Option<String>, String);
    let mut sums: BTreeMap<Key, (i64, i64, i64)> = BTreeMap::new();
    for (day, user, model, input, output) in rows {
        let key = (-day, by_user.then_some(user), model);
        let e = sums.entry(key).or_default();
        e.0 += input;
        e.1 += output;
        e.2 += 1;
    }
    Ok(sums
        .into_iter()
        .map(|((day, user_id, model), (i, o, n))| UsageTotal {
            day: civil_date(-day),
            user_id,
            model,
            input_tokens: i,
            output_tokens: o,
            events: n,
        })
        .collect())
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01, proleptic Gregorian).
pub fn civil_date(days: i64) -> String {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::civil_date;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(59), "1970-03-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(11_017), "2000-03-01");
        assert_eq!(civil_date(20_413), "2025-11-21");
        assert_eq!(civil_date(-1), "1969-12-31");
    }
}
