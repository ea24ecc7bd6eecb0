//! The account list behind `GET /api/v1/admin/users`: ordered by normalized email (unique per
//! tenant, so the order is stable and a keyset), optionally narrowed by a search, with a total
//! counted only up to a cap. Its cost follows the page, not the tenant's size.
//!
//! Search is a case-insensitive substring match on email, username, first and last name, the
//! `LIKE '%text%'` rule it always was. An index narrows the candidates first (a trigram FTS5
//! table on SQLite, pg_trgm GIN indexes on PostgreSQL: migration 0011), and the `LIKE` rule is
//! still applied to each candidate, so the index changes the cost and never the answer. Text
//! shorter than three characters has no trigram and is matched by scanning, as before.

use sqlx::Row as _;

use super::User;
use super::store::{USER_COLUMNS, row_to_user};
use crate::db::{Backend, Db};

/// The plain list's total is exact up to this many accounts, an estimate past it.
pub const TOTAL_CAP: i64 = 10_000;

/// A search's total is exact up to this many matches, an estimate past it.
pub const SEARCH_TOTAL_CAP: i64 = 1_000;

/// Which page of which list.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    /// The tenant whose accounts are listed.
    pub tenant_id: &'a str,
    /// Search text, trimmed; empty lists every account.
    pub search: &'a str,
    /// Resume after the account with this normalized email (a cursor), instead of `offset`.
    pub after: Option<&'a str>,
    /// Accounts to skip (page numbers).
    pub offset: i64,
    /// Accounts on the page.
    pub limit: i64,
}

/// One page of accounts.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The accounts, by normalized email.
    pub users: Vec<User>,
    /// Whether more follow.
    pub more: bool,
    /// The matching accounts, counted up to the cap plus one.
    pub counted: i64,
    /// The cap `counted` was taken against.
    pub cap: i64,
}

enum Bind<'a> {
    Text(&'a str),
    Owned(String),
    Number(i64),
}

/// A query under construction: its text and the values of its `$n` placeholders.
struct Sql<'a> {
    text: String,
    binds: Vec<Bind<'a>>,
}

impl<'a> Sql<'a> {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            binds: Vec::new(),
        }
    }

    /// Appends `text`, each `?` in it becoming the next placeholder for the next value.
    fn push(&mut self, text: &str, values: impl IntoIterator<Item = Bind<'a>>) -> &mut Self {
        let mut values = values.into_iter();
        for (i, piece) in text.split('?').enumerate() {
            if i > 0 {
                if let Some(value) = values.next() {
                    self.binds.push(value);
                }
                self.text.push_str(&format!("${}", self.binds.len()));
            }
            self.text.push_str(piece);
        }
        self
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.text.clone()));
        for bind in &self.binds {
            query = match bind {
                Bind::Text(text) => query.bind(*text),
                Bind::Owned(text) => query.bind(text.as_str()),
                Bind::Number(n) => query.bind(*n),
            };
        }
        query
    }
}

/// `%text%` for `LIKE … ESCAPE '\'`, lowercased, the text's own wildcards escaped.
pub fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// An FTS5 query for `text` as one phrase: with the trigram tokenizer, every row containing
/// the text. Quotes are doubled, so nothing in the text is query syntax.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.to_lowercase().replace('"', "\"\""))
}

/// The search rule, unchanged from the unindexed list.
const MATCHES: &str = "(users.email_normalized LIKE ? ESCAPE '\\' \
     OR users.username_normalized LIKE ? ESCAPE '\\' \
     OR LOWER(users.first_name) LIKE ? ESCAPE '\\' \
     OR LOWER(users.last_name) LIKE ? ESCAPE '\\')";

/// Where the rows come from and which of them match, as `FROM … WHERE …`.
fn source<'a>(query: &ListQuery<'a>, indexed: bool) -> Sql<'a> {
    let mut sql = Sql::new("");
    if indexed {
        // CROSS JOIN keeps SQLite reading the index's candidates first.
        sql.push(
            " FROM users_search CROSS JOIN users ON users.rowid = users_search.rowid \
             WHERE users_search MATCH ? AND users.tenant_id = ?",
            [
                Bind::Owned(fts_phrase(query.search)),
                Bind::Text(query.tenant_id),
            ],
        );
    } else {
        sql.push(
            " FROM users WHERE users.tenant_id = ?",
            [Bind::Text(query.tenant_id)],
        );
    }
    if !query.search.is_empty() {
        let pattern = like_pattern(query.search);
        // Text with no trigram makes a trigram index read every entry: PostgreSQL must not
        // pick one for it, so the columns are hidden from the indexes (same values, same rule).
        let rule = if query.search.chars().count() < 3 {
            MATCHES.replace(" LIKE", " || '' LIKE")
        } else {
            MATCHES.to_owned()
        };
        sql.push(" AND ", []);
        sql.push(&rule, std::iter::repeat_n(pattern, 4).map(Bind::Owned));
    }
    sql
}

/// One page of the tenant's accounts.
pub async fn list(db: &Db, query: &ListQuery<'_>) -> Result<Listing, sqlx::Error> {
    let searching = !query.search.is_empty();
    // FTS5's trigram index can narrow a search of three or more characters.
    let fts = db.backend() == Backend::Sqlite && query.search.chars().count() >= 3;
    let cap = if searching {
        SEARCH_TOTAL_CAP
    } else {
        TOTAL_CAP
    };

    let mut count = source(query, fts);
    count.text = format!("SELECT COUNT(*) AS n FROM (SELECT 1{}", count.text);
    count.push(" LIMIT ?) AS capped", [Bind::Number(cap + 1)]);
    let counted: i64 = count.query().fetch_one(db.pool()).await?.try_get("n")?;

    // Few matches: read them through the index and sort them. Many: walk the email order,
    // where matches are dense enough that a page fills quickly.
    let through_index = fts && counted <= cap;
    let columns: Vec<String> = USER_COLUMNS
        .split(", ")
        .map(|c| format!("users.{c}"))
        .collect();
    let mut page = source(query, through_index);
    page.text = format!("SELECT {}{}", columns.join(", "), page.text);
    let mut offset = query.offset;
    if let Some(after) = query.after {
        page.push(" AND users.email_normalized > ?", [Bind::Text(after)]);
        offset = 0;
    } else if offset > 0 && !searching {
        // Find where the page starts in the (tenant, email) index alone, then read only the
        // page: a deep page skips index entries, never rows.
        page.push(
            " AND users.email_normalized >= (SELECT email_normalized FROM users \
             WHERE tenant_id = ? ORDER BY email_normalized LIMIT 1 OFFSET ?)",
            [Bind::Text(query.tenant_id), Bind::Number(offset)],
        );
        offset = 0;
    }
    page.push(
        " ORDER BY users.email_normalized LIMIT ? OFFSET ?",
        [Bind::Number(query.limit + 1), Bind::Number(offset)],
    );
    let rows = page.query().fetch_all(db.pool()).await?;
    let mut users = rows
        .iter()
        .map(row_to_user)
        .collect::<Result<Vec<_>, _>>()?;
    let more = i64::try_from(users.len()).unwrap_or(i64::MAX) > query.limit;
    users.truncate(usize::try_from(query.limit).unwrap_or(0));
    Ok(Listing {
        users,
        more,
        counted,
        cap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_cannot_smuggle_wildcards_or_query_syntax() {
        assert_eq!(like_pattern("Ada"), "%ada%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(fts_phrase("Say \"hi\" OR x"), "\"say \"\"hi\"\" or x\"");
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut sql = Sql::new("SELECT 1");
        sql.push(" WHERE a = ? AND b = ?", [Bind::Number(1), Bind::Text("x")]);
        sql.push(" LIMIT ?", [Bind::Number(3)]);
        assert_eq!(sql.text, "SELECT 1 WHERE a = $1 AND b = $2 LIMIT $3");
        assert_eq!(sql.binds.len(), 3);
    }
}
