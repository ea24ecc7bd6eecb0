//! Lists: `?page=&page_size=` in, `{items, total, total_is_estimate, page, page_size, pages}`
//! out. Lists that grow without bound (accounts, the audit log) also take `?after=`, an opaque
//! cursor ([`super::cursor`]) from the previous page's `next_cursor`, and count their total
//! only up to a cap (see [`capped_total`]).

use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Page size when the client names none.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: u32,
    /// Items per page, 1 to [`MAX_PAGE_SIZE`].
    pub page_size: u32,
}

#[derive(Deserialize)]
struct RawPage {
    page: Option<u32>,
    page_size: Option<u32>,
}

impl PageRequest {
    /// SQL `LIMIT`.
    pub fn limit(&self) -> i64 {
        i64::from(self.page_size)
    }

    /// SQL `OFFSET`.
    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.page_size)
    }

    /// Wraps one page of items and the total count.
    pub fn page<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        let size = i64::from(self.page_size);
        Page {
            items,
            total,
            total_is_estimate: false,
            page: Some(self.page),
            page_size: self.page_size,
            pages: (total + size - 1) / size,
            next_cursor: None,
        }
    }

    /// One page of a keyset list: `total` as [`capped_total`] gave it, the cursor of the next
    /// page when there is one, and no page number when this page was reached by a cursor.
    pub fn keyset_page<T>(
        &self,
        items: Vec<T>,
        (total, total_is_estimate): (i64, bool),
        next_cursor: Option<String>,
        by_cursor: bool,
    ) -> Page<T> {
        let mut page = self.page(items, total);
        page.total_is_estimate = total_is_estimate;
        page.next_cursor = next_cursor;
        if by_cursor {
            page.page = None;
        }
        page
    }
}

/// A total counted no further than `cap + 1` rows, so that counting never costs more than a
/// bounded index scan however large the list: exact up to `cap`; past it an estimate, the
/// larger of `cap` and what this page proves (`offset` items before it, `shown` on it, and one
/// more when `more` follow). Returns the total and whether it is an estimate.
pub fn capped_total(counted: i64, cap: i64, offset: i64, shown: usize, more: bool) -> (i64, bool) {
    if counted <= cap {
        return (counted, false);
    }
    let seen = offset + i64::try_from(shown).unwrap_or(i64::MAX) + i64::from(more);
    (cap.max(seen), true)
}

/// `?after=`: where a keyset list resumes, as the previous page's `next_cursor` gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct After(pub Option<String>);

#[derive(Deserialize)]
struct RawAfter {
    after: Option<String>,
    page: Option<String>,
}

/// A paging parameter that cannot be honoured.
fn invalid(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_pagination",
        detail,
    )
}

/// Longest cursor accepted; real ones are far shorter.
const MAX_CURSOR: usize = 1_024;

impl<S: Send + Sync> FromRequestParts<S> for After {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(raw) = Query::<RawAfter>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid("`after` is a cursor from a previous page"))?;
        match raw.after {
            None => Ok(Self(None)),
            Some(_) if raw.page.is_some() => Err(invalid("give `page` or `after`, not both")),
            Some(after) if after.is_empty() || after.len() > MAX_CURSOR => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_cursor",
                "`after` is not a cursor this list gave",
            )),
            Some(after) => Ok(Self(Some(after))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PageRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(raw) = Query::<RawPage>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid("`page` and `page_size` must be positive integers"))?;
        let page = raw.page.unwrap_or(1);
        let page_size = raw.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 {
            return Err(invalid("`page` starts at 1"));
        }
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(invalid("`page_size` must be between 1 and 100"));
        }
        Ok(Self { page, page_size })
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Items in the whole list; a lower bound when `total_is_estimate`.
    pub total: i64,
    /// Whether `total` (and so `pages`) is a lower bound rather than an exact count.
    pub total_is_estimate: bool,
    /// This page's number, from 1; `null` for a page reached by a cursor.
    pub page: Option<u32>,
    /// Items per page.
    pub page_size: u32,
    /// Number of pages.
    pub pages: i64,
    /// Keyset lists: pass as `?after=` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_count_up_and_offsets_follow() {
        let request = PageRequest {
            page: 3,
            page_size: 20,
        };
        assert_eq!(request.offset(), 40);
        assert_eq!(request.page(Vec::<()>::new(), 41).pages, 3);
        assert_eq!(request.page(Vec::<()>::new(), 40).pages, 2);
        assert_eq!(request.page(Vec::<()>::new(), 0).pages, 0);
    }

    #[test]
    fn totals_past_the_cap_are_lower_bounds_raised_by_the_page() {
        assert_eq!(capped_total(7, 100, 0, 7, false), (7, false));
        assert_eq!(capped_total(100, 100, 0, 20, true), (100, false));
        assert_eq!(capped_total(101, 100, 0, 20, true), (100, true));
        assert_eq!(capped_total(101, 100, 1_000, 20, true), (1_021, true));
        assert_eq!(capped_total(101, 100, 1_000, 5, false), (1_005, true));
    }
}
