//! The application: builds the services of [`AppState`], merges every capability's router
//! and runs the serve loop.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::middleware;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::DropGuard;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::auth::mfa::Mfa;
use crate::bus::Bus;
use crate::bus::changes::Changes;
use crate::caller::cache::SessionCache;
use crate::clients::ClientCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Create, Db};
use crate::flags::Flags;
use crate::http::cursor::Cursors;
use crate::http::ratelimit::Limiter;
use crate::http::tally::Tally;
use crate::idempotency::Idempotency;
use crate::jobs::Jobs;
use crate::keys::Keys;
use crate::master::{Generate, MasterKey};
use crate::oauth::denylist::DenyList;
use crate::passwords::Passwords;
use crate::rbac::Rbac;
use crate::realtime::Realtime;
use crate::revocations::Feed;
use crate::sessions::Sessions;
use crate::state::{AppState, Services};
use crate::users::{self, bootstrap};
use crate::{
    audit, auth, cleanup, clients, console, flags, health, http, idempotency, keys, oauth, rbac,
    realtime, revocations, sessions, status, tenants,
};

/// A server ready to run: connected, migrated, routes built.
pub struct Application {
    state: AppState,
    router: Router,
    bootstrap: Option<bootstrap::Created>,
    /// The separate `/metrics` listener (`metrics.bind`), bound at build so a taken port
    /// fails the start rather than the first scrape.
    metrics_listener: Option<TcpListener>,
    /// Every background loop (bus followers, flushers, sealer, cleanup, key refresh); `run` stops
    /// and awaits them at shutdown.
    jobs: Jobs,
    /// Stops the loops if the application is dropped without running.
    _stop_jobs: DropGuard,
}

impl Application {
    /// Connects to the database, brings the schema up to date (or refuses an outdated one when
    /// `database.migrate_on_start` is off) and builds the router, on the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// [`build`](Self::build) with the time read from `clock` by every service that decides
    /// by it (tests pass a manual clock and advance it).
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let metrics_listener = match config.metrics.bind {
            Some(bind) => Some(
                TcpListener::bind(bind)
                    .await
                    .with_context(|| format!("cannot listen on {bind} (metrics.bind)"))?,
            ),
            None => None,
        };
        if !http::metrics::served_publicly(&config) && config.metrics.bind.is_none() {
            tracing::warn!(
                "/metrics is not served: production needs metrics.bind (a separate listener) \
                 or metrics.token (a scraper's bearer token)"
            );
        }
        let db = Db::connect(&config.database, Create::IfMissing).await?;
        if config.database.migrate_on_start {
            let applied = db.migrate_up().await?;
            if !applied.is_empty() {
                tracing::info!(?applied, "applied migrations");
            }
        } else if !db
            .schema_is_current()
            .await
            .context("cannot read the migration history")?
        {
            anyhow::bail!(
                "the database schema is not current and database.migrate_on_start is off; \
                 run `tessera migrate up` first"
            );
        }
        let jobs = Jobs::new();
        // Every cross-instance effect follows the bus: subscribed before anything is read,
        // so no announcement passes by.
        let bus = Bus::start(&config, &jobs).await?;
        let changes = Changes::start(&db, &bus, &jobs, clock.clone())
            .await
            .context("cannot read the cache changes")?;
        let keys = Keys::start(&config, &db).await?;
        keys.spawn_refresher(&jobs, db.clone(), &changes);
        let passwords = Arc::new(Passwords::new(&config.passwords)?);
        let master = MasterKey::load(&config, Generate::IfMissing)?;
        let feed = Feed::load(&db, Arc::clone(&bus))
            .await
            .context("cannot read the revocation feed")?;
        // Subscribed before the feed's first read, so no entry passes it by.
        let rbac = Arc::new(Rbac::new());
        rbac.follow(&feed);
        rbac.follow_changes(&changes);
        let realtime = Realtime::start(&config, &db, &bus, &feed, &jobs)
            .await
            .context("cannot read the real-time event log")?;
        let session_cache = Arc::new(SessionCache::new());
        session_cache.follow(&jobs, &feed, &changes, clock.clone());
        let denylist = DenyList::load(&db)
            .await
            .context("cannot read the revoked tokens")?;
        denylist.follow(&jobs, &feed, db.clone());
        let clients = Arc::new(ClientCache::new(Arc::clone(&feed)));
        clients.follow(&changes);
        feed.follow(&jobs, db.clone());
        let sessions = Arc::new(Sessions::new(
            &config,
            &master,
            Arc::clone(&feed),
            Arc::clone(&session_cache) as Arc<dyn sessions::Watcher>,
        ));
        let idempotency = Arc::new(Idempotency::new(&config, &master));
        cleanup::spawn(&jobs, db.clone(), idempotency.ttl_secs());
        let auth = Arc::new(Auth::new(&config, &master));
        let audit_chain = audit::chain::ChainKey::new(&master);
        audit::chain::spawn_sealer(
            &jobs,
            db.clone(),
            audit_chain.clone(),
            config.audit.retention_days,
        );
        let limiter = Arc::new(Limiter::new(&config, clock.clone()).await?);
        audit::tally::spawn_flusher(&jobs, limiter.refusals(), db.clone());
        let flags = Flags::load(&config, &db, Arc::clone(&bus))
            .await
            .context("cannot read the feature flags")?;
        flags.follow(&jobs, db.clone());
        let csp_reports = Tally::new("csp.violation");
        audit::tally::spawn_flusher(&jobs, &csp_reports, db.clone());
        let bootstrap = bootstrap::ensure_admin(
            &db,
            &passwords,
            std::env::var(bootstrap::EMAIL_VAR).ok(),
            std::env::var(bootstrap::PASSWORD_VAR).ok(),
        )
        .await?;
        // Install the recorder before the first request so build info is always present.
        http::metrics::handle();
        let state = AppState::new(Services {
            config,
            db,
            bus,
            changes,
            keys,
            passwords,
            sessions,
            session_cache,
            auth,
            rbac,
            denylist,
            clients,
            feed,
            limiter,
            csp_reports,
            mfa: Arc::new(Mfa::new(&master, clock.clone())),
            cursors: Arc::new(Cursors::new(&master)),
            flags,
            realtime,
            clock,
            idempotency,
            audit_chain,
        });
        let router = router(state.clone(), &jobs);
        Ok(Self {
            state,
            router,
            bootstrap,
            metrics_listener,
            _stop_jobs: jobs.drop_guard(),
            jobs,
        })
    }

    /// Where the separate `/metrics` listener listens, when `metrics.bind` is set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The shared state (tests use it to reach the database).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The bootstrap admin created by this start, if any, so its generated password can be
    /// shown once. Taking it leaves `None`.
    pub fn take_bootstrap(&mut self) -> Option<bootstrap::Created> {
        self.bootstrap.take()
    }

    /// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish and
    /// closes the database pool.
    pub async fn run<F>(self, listener: TcpListener, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        // Open revocation streams and real-time connections never end by themselves; shutting
        // down ends them.
        let feed = Arc::clone(self.state.feed());
        let flags = Arc::clone(self.state.flags());
        let realtime = Arc::clone(self.state.realtime());
        let (stopping, stop) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            feed.close();
            flags.close();
            realtime.close();
            stopping.send_replace(true);
        };
        let metrics = self.metrics_listener.map(|listener| {
            let router = Router::new()
                .route("/metrics", get(http::metrics::private))
                .with_state(self.state.clone());
            let mut stop = stop.clone();
            tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        // Also ends when the main server failed and dropped the sender.
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    })
                    .into_future(),
            )
        });
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        self.jobs.shutdown().await;
        served?;
        self.state.db().close().await;
        Ok(())
    }
}

/// Every capability's routes and the OpenAPI document they make up.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(http::openapi::base())
        .merge(health::router())
        .merge(keys::routes::router())
        .merge(oauth::router())
        .merge(auth::routes::router())
        .merge(sessions::routes::router())
        .merge(rbac::routes::router())
        .merge(users::routes::router())
        .merge(tenants::routes::router())
        .merge(clients::routes::router())
        .merge(revocations::routes::router())
        .merge(audit::routes::router())
        .merge(http::csp::router())
        .merge(flags::routes::router())
        .merge(realtime::router())
        .merge(status::routes::router())
        .merge(console::routes::router())
        .routes(routes!(http::metrics::public))
        .routes(routes!(http::openapi::serve))
        .routes(routes!(console::reference::serve))
        .split_for_parts()
}

/// Every capability's routes behind the conventions every route follows (idempotency keys,
/// preconditions and locks on administrative resources, ETags, `Link` and `Cache-Control`)
/// and the shared stack.
fn router(state: AppState, jobs: &Jobs) -> Router {
    let (routes, openapi) = routes();
    let document = http::openapi::Document(Arc::new(http::openapi::complete(
        openapi,
        state.config(),
        &http::openapi::Rules {
            refuses_keys: idempotency::is_exempt,
            channel_pattern: realtime::channel::PATTERN,
            channel_max_bytes: realtime::channel::MAX_CHANNEL_BYTES,
        },
    )));
    let reference = console::reference::Reference::render(&document.0);
    let answered = http::methods::Answered::of(&document.0);
    let routes = routes
        .layer(axum::Extension(document))
        .layer(axum::Extension(reference));
    let preconditions = http::conditional::Preconditions {
        routes: routes.clone().with_state(state.clone()),
        db: state.db().clone(),
        clock: state.clock().clone(),
        stale_secs: i64::try_from(state.config().http.request_timeout_secs)
            .unwrap_or(i64::MAX)
            .saturating_add(5),
    };
    // Outermost first: tags and links see every answer, replays included; a replay never
    // meets a precondition (the resource changed by the request it repeats). Keys and
    // preconditions apply to a method a route answers: any other is 405 before either (a
    // route layer also wraps the route's own 405, hence `methods::layer`).
    let routes = routes
        .route_layer(middleware::from_fn_with_state(
            preconditions,
            http::conditional::if_match,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .route_layer(middleware::from_fn_with_state(
            answered,
            http::methods::layer,
        ))
        .layer(middleware::from_fn(http::conditional::layer));
    http::apply_stack(routes, state.config(), jobs).with_state(state)
}
