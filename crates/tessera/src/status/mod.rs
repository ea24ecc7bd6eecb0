//! The platform's status page: status events that operators (or their monitors, as service
//! accounts) post about each service, and the overall status read from them.
//!
//! A service's current status is its latest event's, unless that event named an `ends_at`
//! that has passed (a maintenance window or an incident expected to be over): then the
//! service is `operational` again. The overall status is the worst current one, by
//! [`Status::severity`]; with no events at all, `operational`.

pub mod routes;
pub mod store;

use serde::{Deserialize, Serialize};

/// A service's status, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Working normally.
    Operational,
    /// Planned work; may be unavailable for its announced window.
    Maintenance,
    /// Working, slower or with errors.
    Degraded,
    /// Unavailable for some.
    PartialOutage,
    /// Unavailable.
    MajorOutage,
}

impl Status {
    /// Every status, best first.
    pub const ALL: [Status; 5] = [
        Self::Operational,
        Self::Maintenance,
        Self::Degraded,
        Self::PartialOutage,
        Self::MajorOutage,
    ];

    /// Higher is worse: planned maintenance is the mildest departure from normal (it was
    /// announced), a major outage the worst.
    pub fn severity(self) -> u8 {
        match self {
            Self::Operational => 0,
            Self::Maintenance => 1,
            Self::Degraded => 2,
            Self::PartialOutage => 3,
            Self::MajorOutage => 4,
        }
    }

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operational => "operational",
            Self::Maintenance => "maintenance",
            Self::Degraded => "degraded",
            Self::PartialOutage => "partial_outage",
            Self::MajorOutage => "major_outage",
        }
    }

    /// The status stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One status event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatusEvent {
    /// Its id.
    pub id: String,
    /// The service it is about.
    pub service: String,
    /// The status it reports.
    pub status: Status,
    /// What operators said.
    pub message: String,
    /// Unix seconds when it is expected to end, if known.
    pub ends_at: Option<i64>,
    /// Unix seconds when it was posted.
    pub created_at: i64,
}

impl StatusEvent {
    /// The status this event means for its service at `now` (Unix seconds): its own, or
    /// `operational` once its `ends_at` has passed.
    pub fn current_at(&self, now: i64) -> Status {
        match self.ends_at {
            Some(end) if end <= now => Status::Operational,
            _ => self.status,
        }
    }
}

/// The worst of `statuses`; `operational` when there are none.
pub fn overall(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses
        .into_iter()
        .max_by_key(|s| s.severity())
        .unwrap_or(Status::Operational)
}

/// Whether `name` is a service name: 1 to 64 of `a-z 0-9 - _ .`.
pub fn valid_service(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: Status, ends_at: Option<i64>) -> StatusEvent {
        StatusEvent {
            id: "e".into(),
            service: "api".into(),
            status,
            message: "m".into(),
            ends_at,
            created_at: 0,
        }
    }

    #[test]
    fn overall_is_the_worst_current_status() {
        use Status::*;
        let table: &[(&[Status], Status)] = &[
            (&[], Operational),
            (&[Operational], Operational),
            (&[Operational, Maintenance], Maintenance),
            (&[Maintenance, Degraded], Degraded),
            (&[Degraded, PartialOutage, Operational], PartialOutage),
            (&[MajorOutage, Maintenance, PartialOutage], MajorOutage),
            (&[Operational, Operational, MajorOutage], MajorOutage),
        ];
        for (statuses, expected) in table {
            assert_eq!(overall(statuses.iter().copied()), *expected, "{statuses:?}");
        }
    }

    #[test]
    fn an_event_past_its_end_counts_as_operational() {
        assert_eq!(
            event(Status::Maintenance, Some(100)).current_at(99),
            Status::Maintenance
        );
        assert_eq!(
            event(Status::Maintenance, Some(100)).current_at(100),
            Status::Operational
        );
        assert_eq!(
            event(Status::MajorOutage, None).current_at(i64::MAX),
            Status::MajorOutage
        );
    }

    #[test]
    fn statuses_round_trip_through_their_text() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("down"), None);
    }

    #[test]
    fn service_names_are_short_lowercase_words() {
        assert!(valid_service("api"));
        assert!(valid_service("billing.eu-1"));
        assert!(!valid_service(""));
        assert!(!valid_service("API"));
        assert!(!valid_service(&"a".repeat(65)));
        assert!(!valid_service("a b"));
    }
}
