//! The hub's Prometheus series. Every label comes from a closed set (the transport, a close
//! code the hub itself chose), so clients cannot create series.

use super::hub::Transport;

/// A connection opened.
pub fn connection_opened(transport: Transport) {
    metrics::gauge!("tessera_realtime_connections", "transport" => transport.as_str())
        .increment(1.0);
}

/// A connection ended.
pub fn connection_closed(transport: Transport) {
    metrics::gauge!("tessera_realtime_connections", "transport" => transport.as_str())
        .decrement(1.0);
}

/// Subscriptions added (positive) or removed (negative).
pub fn subscriptions_changed(delta: f64) {
    metrics::gauge!("tessera_realtime_subscriptions").increment(delta);
}

/// An event entered this instance's hub (published here or read from the log).
pub fn event_in() {
    metrics::counter!("tessera_realtime_events_in_total").increment(1);
}

/// `count` deliveries of one event to connections of `transport`.
pub fn events_out(transport: Transport, count: u64) {
    if count > 0 {
        metrics::counter!("tessera_realtime_events_out_total", "transport" => transport.as_str())
            .increment(count);
    }
}

/// A connection was cut because its queue was full.
pub fn slow_consumer(transport: Transport) {
    metrics::counter!("tessera_realtime_dropped_total", "transport" => transport.as_str())
        .increment(1);
}

/// A connection was ended by the hub with `code`.
pub fn closed_with(code: u16) {
    let label = match code {
        1001 => "1001",
        4401 => "4401",
        4403 => "4403",
        4408 => "4408",
        _ => "other",
    };
    metrics::counter!("tessera_realtime_closes_total", "code" => label).increment(1);
}

/// A handshake authenticated by an access token in the query string (the legacy window).
pub fn legacy_query_token() {
    metrics::counter!("tessera_realtime_legacy_query_tokens_total").increment(1);
}

/// A handshake refused before the upgrade, by HTTP status.
pub fn handshake_refused(status: u16) {
    let label = match status {
        400 => "400",
        401 => "401",
        403 => "403",
        429 => "429",
        _ => "other",
    };
    metrics::counter!("tessera_realtime_handshakes_refused_total", "status" => label).increment(1);
}
