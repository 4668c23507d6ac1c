//! Pagination shared by every list endpoint: `?limit=&cursor=` in, one
//! `Page { items, nextCursor }` out. Lists are read by keyset (`sort key,
//! id`), so a page costs the same wherever it is and a write between two
//! pages neither repeats nor skips an item. The cursor is `"{key}.{id}"` of
//! the last item of the previous page; clients treat it as opaque.

use serde::Deserialize;
use tandem_protocol::http::{Page, DEFAULT_PAGE, MAX_PAGE};

use crate::error::ApiError;
use crate::validate;

/// One page of rows and the cursor of the next page (`None` on the last).
pub type Paged<T> = (Vec<T>, Option<String>);

/// `?limit=&cursor=` of a list request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageQuery {
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// A checked page request: the key of the item to continue after, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageReq {
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

impl PageReq {
    /// The first page of `limit` items.
    pub fn first(limit: i64) -> PageReq {
        PageReq { after: None, limit }
    }

    /// Rows to fetch: one more than the page, to learn whether more follow.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

impl PageQuery {
    /// 422 for a `limit` outside 1..=MAX_PAGE, 400 for a cursor this server did not make.
    pub fn check(&self) -> Result<PageReq, ApiError> {
        check(self.cursor.as_deref(), self.limit)
    }
}

pub fn check(cursor: Option<&str>, limit: Option<i64>) -> Result<PageReq, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be 1..={MAX_PAGE}"
        )));
    }
    let after = cursor.map(parse_cursor).transpose()?;
    Ok(PageReq { after, limit })
}

fn parse_cursor(raw: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::BadRequest("cursor is not valid".into());
    let (at, id) = raw.split_once('.').ok_or_else(bad)?;
    let at = at.parse::<i64>().map_err(|_| bad())?;
    validate::id(id).map_err(|_| bad())?;
    Ok((at, id.to_string()))
}

/// Cuts `rows` (fetched with [`PageReq::fetch`]) to the page and makes the
/// cursor of the next page from the last kept row's `key`.
pub fn cut<T>(
    mut rows: Vec<T>,
    req: &PageReq,
    key: impl Fn(&T) -> (i64, &str),
) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > req.limit;
    rows.truncate(req.limit.max(0) as usize);
    let next = rows.last().filter(|_| more).map(|r| {
        let (k, id) = key(r);
        format!("{k}.{id}")
    });
    (rows, next)
}

/// [`cut`], then each row mapped to its wire shape.
pub fn page<R, T>(
    rows: Vec<R>,
    req: &PageReq,
    key: impl Fn(&R) -> (i64, &str),
    dto: impl FnMut(R) -> T,
) -> Page<T> {
    let (rows, next_cursor) = cut(rows, req, key);
    Page {
        items: rows.into_iter().map(dto).collect(),
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(check(None, None).unwrap(), PageReq::first(DEFAULT_PAGE));
        assert!(matches!(check(None, Some(0)), Err(ApiError::Validation(_))));
        assert!(matches!(
            check(None, Some(MAX_PAGE + 1)),
            Err(ApiError::Validation(_))
        ));
        assert!(matches!(
            check(Some("x"), None),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            check(Some("1.a b"), None),
            Err(ApiError::BadRequest(_))
        ));
        let req = check(Some("-5.abc"), Some(2)).unwrap();
        assert_eq!(req.after, Some((-5, "abc".to_string())));
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_follow() {
        let req = PageReq::first(2);
        let rows = vec![(1, "a"), (2, "b"), (3, "c")];
        let (kept, next) = cut(rows, &req, |r| (r.0, r.1));
        assert_eq!(kept, vec![(1, "a"), (2, "b")]);
        assert_eq!(next.as_deref(), Some("2.b"));
        let (kept, next) = cut(vec![(1, "a")], &req, |r| (r.0, r.1));
        assert_eq!((kept.len(), next), (1, None));
    }
}
