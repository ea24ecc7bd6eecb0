//! `AppState`: the services of one running instance, shared by every handler. The one
//! composition point of the crate: it names the service of each capability, and every route
//! module names it; it builds no router (that is [`crate::app`]).

use std::sync::Arc;

use crate::audit::chain::ChainKey;
use crate::auth::Auth;
use crate::auth::mfa::Mfa;
use crate::bus::Bus;
use crate::bus::changes::Changes;
use crate::caller::cache::SessionCache;
use crate::clients::ClientCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::flags::Flags;
use crate::http::cursor::Cursors;
use crate::http::ratelimit::Limiter;
use crate::http::tally::Tally;
use crate::idempotency::Idempotency;
use crate::keys::Keys;
use crate::oauth::denylist::DenyList;
use crate::passwords::Passwords;
use crate::rbac::Rbac;
use crate::realtime::Realtime;
use crate::revocations::Feed;
use crate::sessions::Sessions;

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Services>,
}

/// Every service an instance runs, built once by the application at start.
pub struct Services {
    /// The validated configuration this instance started with.
    pub config: Config,
    /// The database pool.
    pub db: Db,
    /// The change bus: how changes committed elsewhere reach this instance.
    pub bus: Arc<Bus>,
    /// Cache invalidations read from the bus, for the caches that follow them.
    pub changes: Arc<Changes>,
    /// Signing keys: the current signer, verifier and JWKS.
    pub keys: Arc<Keys>,
    /// Password hashing on its bounded pool.
    pub passwords: Arc<Passwords>,
    /// Sessions and refresh rotation.
    pub sessions: Arc<Sessions>,
    /// Whether each session is live, as every authenticated request checks it.
    pub session_cache: Arc<SessionCache>,
    /// Cookie names and CSRF protection for browsers.
    pub auth: Arc<Auth>,
    /// Role definitions, each account's current roles, and permission checks.
    pub rbac: Arc<Rbac>,
    /// Access tokens revoked before their expiry.
    pub denylist: Arc<DenyList>,
    /// Service accounts, cached for the OAuth endpoints.
    pub clients: Arc<ClientCache>,
    /// The revocation feed's pushes to open streams.
    pub feed: Arc<Feed>,
    /// Rate limits and login lockout.
    pub limiter: Arc<Limiter>,
    /// CSP violation reports, written to the audit log aggregated.
    pub csp_reports: Arc<Tally>,
    /// TOTP second factor.
    pub mfa: Arc<Mfa>,
    /// Seals and opens the cursors of keyset lists.
    pub cursors: Arc<Cursors>,
    /// Feature flags: the current set, kept current across instances.
    pub flags: Arc<Flags>,
    /// The real-time hub: connections bound to sessions, the event log, history.
    pub realtime: Arc<Realtime>,
    /// The time every expiry, limit and lockout is decided by.
    pub clock: Clock,
    /// The keys of the idempotency replay store.
    pub idempotency: Arc<Idempotency>,
    /// The key the audit chain is sealed with, so the chain's status can be checked live.
    pub audit_chain: ChainKey,
}

impl AppState {
    /// The state of an instance running `services`.
    pub fn new(services: Services) -> Self {
        Self {
            inner: Arc::new(services),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The change bus.
    pub fn bus(&self) -> &Arc<Bus> {
        &self.inner.bus
    }

    /// Cache invalidations from every instance.
    pub fn changes(&self) -> &Arc<Changes> {
        &self.inner.changes
    }

    /// The signing-key service.
    pub fn keys(&self) -> &Arc<Keys> {
        &self.inner.keys
    }

    /// The password service.
    pub fn passwords(&self) -> &Arc<Passwords> {
        &self.inner.passwords
    }

    /// The session service.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.inner.sessions
    }

    /// The cache of live sessions.
    pub fn session_cache(&self) -> &Arc<SessionCache> {
        &self.inner.session_cache
    }

    /// Browser authentication settings.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// Roles and permissions.
    pub fn rbac(&self) -> &Rbac {
        &self.inner.rbac
    }

    /// Revoked access tokens.
    pub fn denylist(&self) -> &DenyList {
        &self.inner.denylist
    }

    /// Service accounts.
    pub fn clients(&self) -> &ClientCache {
        &self.inner.clients
    }

    /// The revocation feed.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.inner.feed
    }

    /// Rate limits and login lockout.
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// TOTP second factor.
    pub fn mfa(&self) -> &Mfa {
        &self.inner.mfa
    }

    /// CSP violation reports not yet written to the audit log.
    pub fn csp_reports(&self) -> &Arc<Tally> {
        &self.inner.csp_reports
    }

    /// Cursors of the keyset lists.
    pub fn cursors(&self) -> &Cursors {
        &self.inner.cursors
    }

    /// Feature flags.
    pub fn flags(&self) -> &Arc<Flags> {
        &self.inner.flags
    }

    /// The real-time hub.
    pub fn realtime(&self) -> &Arc<Realtime> {
        &self.inner.realtime
    }

    /// The keys of the idempotency replay store.
    pub fn idempotency(&self) -> &Idempotency {
        &self.inner.idempotency
    }

    /// The time every expiry, limit and lockout is decided by.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The audit chain's key.
    pub fn audit_chain(&self) -> &ChainKey {
        &self.inner.audit_chain
    }
}
