//! Lists: `?page=&page_size=` in, `{items, total, page, page_size, pages}` out.

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
            page: self.page,
            page_size: self.page_size,
            pages: (total + size - 1) / size,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PageRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = |detail: &str| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_pagination",
                detail,
            )
        };
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
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Items in the whole list.
    pub total: i64,
    /// This page's number, from 1.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
    /// Number of pages.
    pub pages: i64,
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
}
