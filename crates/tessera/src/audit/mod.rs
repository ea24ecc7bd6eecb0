//! The audit log: one row per security-relevant event, written in the same transaction as the
//! change it records, sealed into a tamper-evident chain ([`chain`]) and queried by
//! administrators ([`routes`]).

pub mod chain;
pub mod routes;
pub mod store;
pub mod tally;

use serde_json::Value;

use crate::http::client::RequestMeta;
use sqlx::AnyConnection;

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user.
    User(String),
    /// A service account.
    Client(String),
    /// Tessera itself or an operator at the CLI.
    System,
    /// Nobody authenticated (a failed login, say).
    Anonymous,
}

impl Actor {
    fn parts(&self) -> (&'static str, Option<&str>) {
        match self {
            Self::User(id) => ("user", Some(id)),
            Self::Client(id) => ("client", Some(id)),
            Self::System => ("system", None),
            Self::Anonymous => ("anonymous", None),
        }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// Dotted verb: `user.created`, `login.failed`, …
    pub action: &'static str,
    /// Who.
    pub actor: &'a Actor,
    /// In which tenant.
    pub tenant_id: Option<&'a str>,
    /// On what: a type and an id.
    pub target: Option<(&'static str, &'a str)>,
    /// Whether it succeeded.
    pub success: bool,
    /// Why (failures, revocations); never a secret.
    pub reason: Option<&'a str>,
    /// Request context.
    pub origin: &'a RequestMeta,
    /// Further facts.
    pub details: Option<Value>,
}

impl<'a> Event<'a> {
    /// A successful `action` by `actor`, from the request `origin`: no tenant, target, reason
    /// or details until the methods below add them.
    pub fn new(action: &'static str, actor: &'a Actor, origin: &'a RequestMeta) -> Self {
        Self {
            action,
            actor,
            tenant_id: None,
            target: None,
            success: true,
            reason: None,
            origin,
            details: None,
        }
    }

    /// In the tenant `tenant_id`.
    pub fn in_tenant(self, tenant_id: &'a str) -> Self {
        self.tenant(Some(tenant_id))
    }

    /// In `tenant_id`, when known (none: an event of the whole installation).
    pub fn tenant(mut self, tenant_id: Option<&'a str>) -> Self {
        self.tenant_id = tenant_id;
        self
    }

    /// On the `kind` with this `id` (`("user", id)`).
    pub fn on(mut self, kind: &'static str, id: &'a str) -> Self {
        self.target = Some((kind, id));
        self
    }

    /// On `target`, when there is one.
    pub fn target(mut self, target: Option<(&'static str, &'a str)>) -> Self {
        self.target = target;
        self
    }

    /// A failure, and why (never a secret).
    pub fn failed(self, reason: &'a str) -> Self {
        self.failure(Some(reason))
    }

    /// A failure, and why when there is a reason to give.
    pub fn failure(mut self, reason: Option<&'a str>) -> Self {
        self.success = false;
        self.reason = reason;
        self
    }

    /// Whether it succeeded, decided at run time.
    pub fn succeeded(mut self, success: bool) -> Self {
        self.success = success;
        self
    }

    /// Why a successful change was made (a revocation's cause).
    pub fn because(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Further facts.
    pub fn details(mut self, details: impl Into<Option<Value>>) -> Self {
        self.details = details.into();
        self
    }

    /// Writes the event on `conn`, normally a transaction that also holds the change.
    pub async fn record(&self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        record(conn, self).await
    }
}

/// Writes `event` on `conn`, normally a transaction that also holds the change.
pub async fn record(conn: &mut AnyConnection, event: &Event<'_>) -> Result<(), sqlx::Error> {
    let (actor_type, actor_id) = event.actor.parts();
    let (target_type, target_id) = event.target.unzip();
    let now_ms = tessera_token::unix_now_ms();
    sqlx::query(
        "INSERT INTO audit_events (id, occurred_at, tenant_id, actor_type, actor_id, action, \
         target_type, target_id, outcome, reason, ip, user_agent, request_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now_ms)
    .bind(event.tenant_id)
    .bind(actor_type)
    .bind(actor_id)
    .bind(event.action)
    .bind(target_type)
    .bind(target_id)
    .bind(if event.success { "success" } else { "failure" })
    .bind(event.reason)
    .bind(event.origin.ip.as_deref())
    .bind(event.origin.user_agent.as_deref())
    .bind(event.origin.request_id.as_deref())
    .bind(event.details.as_ref().map(Value::to_string))
    .execute(conn)
    .await?;
    Ok(())
}
