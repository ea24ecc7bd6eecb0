//! Channel names, parsed once at the edge, and the permissions a tenant topic asks for.
//!
//! | channel | who may subscribe |
//! |---|---|
//! | `user:<user id>` | that user (any of its sessions) |
//! | `session:<session id>` | that session |
//! | `tenant:<tenant id>:<topic…>` | members of the tenant holding `events:subscribe` for the topic |
//! | `flags` | anyone signed in |
//! | `status` | anyone signed in (the public status page's changes) |
//!
//! A topic is one to eight segments separated by `:`, each 1–64 of `a-z 0-9 _ -`
//! (`service-lifecycle:0190…`). Permissions name topics with the same segments joined by
//! `.` in the resource part, and a grant covers its topic and every topic below it:
//!
//! - `events:subscribe` — every topic of the tenant;
//! - `events.service-lifecycle:subscribe` — `service-lifecycle` and `service-lifecycle:*`
//!   at any depth;
//! - `events.service-lifecycle.0190abcd:subscribe` — that one instance's topic (and below).
//!
//! Matching is rbac's own ([`Permission::allows`]): the channel asks for each of these
//! candidates and one granted suffices, so `*:*`, `*:subscribe` and `events.x:*` work as
//! everywhere else. Publishing follows the same rule with `publish`.

use std::fmt;

use crate::rbac::Permission;

/// Longest channel name accepted.
pub const MAX_CHANNEL_BYTES: usize = 256;

/// Most segments in a tenant topic.
pub const MAX_TOPIC_SEGMENTS: usize = 8;

/// What [`Channel::parse`] accepts (within [`MAX_CHANNEL_BYTES`]), as a regular expression
/// for the API's schema.
pub const PATTERN: &str = "^(flags|status|(user|session):[a-z0-9_-]{1,64}|tenant:[a-z0-9_-]{1,64}(:[a-z0-9_-]{1,64}){1,8})$";

/// Longest segment (an id or a topic part).
const MAX_SEGMENT: usize = 64;

/// Longest permission part (see `tessera_token::Permission`): deeper topic candidates that
/// would not fit are never granted on their own, only through a shorter prefix.
const MAX_PERMISSION_PART: usize = 64;

/// What a channel carries, by its first segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// Events for one user, whatever its session.
    User(String),
    /// Events for one session.
    Session(String),
    /// A topic of a tenant.
    Tenant {
        /// The tenant id.
        tenant_id: String,
        /// The topic's segments.
        topic: Vec<String>,
    },
    /// Flag changes, for everyone.
    Flags,
    /// Status page changes, for everyone.
    Status,
}

/// A valid channel name and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName {
    text: String,
    kind: ChannelKind,
}

/// Text that is not a channel; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a channel: expected `user:<id>`, `session:<id>`, `tenant:<tenant id>:<topic>` (topic \
     segments separated by `:`, each 1-64 of a-z 0-9 _ -, at most {MAX_TOPIC_SEGMENTS}), `flags` \
     or `status`"
)]
pub struct InvalidChannel;

fn segment_ok(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// The event type on the `flags` channel when a flag or a tenant's override changed.
pub const FLAG_CHANGED: &str = "flag.changed";

impl ChannelName {
    /// The `flags` channel, where Tessera announces flag changes.
    pub fn flags() -> Self {
        Self {
            text: "flags".to_owned(),
            kind: ChannelKind::Flags,
        }
    }

    /// Parses a channel name.
    pub fn parse(text: &str) -> Result<Self, InvalidChannel> {
        if text.len() > MAX_CHANNEL_BYTES {
            return Err(InvalidChannel);
        }
        let segments: Vec<&str> = text.split(':').collect();
        if !segments.iter().all(|s| segment_ok(s)) {
            return Err(InvalidChannel);
        }
        let kind = match segments.as_slice() {
            ["flags"] => ChannelKind::Flags,
            ["status"] => ChannelKind::Status,
            ["user", id] => ChannelKind::User((*id).to_owned()),
            ["session", id] => ChannelKind::Session((*id).to_owned()),
            ["tenant", tenant, topic @ ..]
                if !topic.is_empty() && topic.len() <= MAX_TOPIC_SEGMENTS =>
            {
                ChannelKind::Tenant {
                    tenant_id: (*tenant).to_owned(),
                    topic: topic.iter().map(|s| (*s).to_owned()).collect(),
                }
            }
            _ => return Err(InvalidChannel),
        };
        Ok(Self {
            text: text.to_owned(),
            kind,
        })
    }

    /// The tenant topic channel `tenant:<tenant_id>:<topic>`.
    pub fn tenant_topic(tenant_id: &str, topic: &str) -> Result<Self, InvalidChannel> {
        Self::parse(&format!("tenant:{tenant_id}:{topic}"))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What it names.
    pub fn kind(&self) -> &ChannelKind {
        &self.kind
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a caller wants to do on a tenant topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Receive its events.
    Subscribe,
    /// Send events to it.
    Publish,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
        }
    }

    /// The topic-less permission (`events:subscribe`, `events:publish`).
    pub fn permission(self) -> Permission {
        candidate("events", self)
    }
}

fn candidate(resource: &str, action: Action) -> Permission {
    Permission::parse(&format!("{resource}:{}", action.as_str()))
        .expect("topic segments are valid permission characters")
}

/// The permissions any of which allows `action` on `topic`: `events:<action>`, then one per
/// topic prefix, shortest first (see the module documentation).
pub fn topic_permissions(topic: &[String], action: Action) -> Vec<Permission> {
    let mut resource = String::from("events");
    let mut candidates = vec![candidate(&resource, action)];
    for segment in topic {
        resource.push('.');
        resource.push_str(segment);
        if resource.len() > MAX_PERMISSION_PART {
            break;
        }
        candidates.push(candidate(&resource, action));
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(texts: &[&str]) -> Vec<Permission> {
        texts
            .iter()
            .map(|t| Permission::parse(t).expect("permission"))
            .collect()
    }

    fn allowed(grants: &[&str], channel: &str, action: Action) -> bool {
        let ChannelKind::Tenant { topic, .. } = ChannelName::parse(channel).expect("channel").kind
        else {
            panic!("not a tenant channel")
        };
        let held = held(grants);
        topic_permissions(&topic, action)
            .iter()
            .any(|wanted| held.iter().any(|h| h.allows(wanted)))
    }

    #[test]
    fn channel_names_parse_into_their_kind() {
        assert_eq!(
            ChannelName::parse("flags").map(|c| c.kind),
            Ok(ChannelKind::Flags)
        );
        assert_eq!(
            ChannelName::parse("user:0190-ab").map(|c| c.kind),
            Ok(ChannelKind::User("0190-ab".into()))
        );
        assert_eq!(
            ChannelName::parse("tenant:t1:service-lifecycle:i-9").map(|c| c.kind),
            Ok(ChannelKind::Tenant {
                tenant_id: "t1".into(),
                topic: vec!["service-lifecycle".into(), "i-9".into()],
            })
        );
    }

    #[test]
    fn malformed_channel_names_are_refused() {
        let long = format!("tenant:t:{}", "a:".repeat(200));
        for bad in [
            "",
            "flags:x",
            "user:",
            "user:a:b",
            "session",
            "tenant:t1",
            "tenant:t1:",
            "tenant:t1:Topic",
            "tenant:t1:a.b",
            "tenant:t1:a*",
            "tenant::a",
            "tenant:t:1:2:3:4:5:6:7:8:9",
            "other:x",
            "user:x\n",
            long.as_str(),
        ] {
            assert_eq!(ChannelName::parse(bad), Err(InvalidChannel), "{bad:?}");
        }
    }

    #[test]
    fn a_topic_grant_covers_its_topic_and_everything_below_it() {
        let table = [
            // grants, channel, allowed
            (&["events:subscribe"][..], "tenant:t:anything:deep", true),
            (&["events:*"][..], "tenant:t:a", true),
            (&["*:*"][..], "tenant:t:a", true),
            (&["*:subscribe"][..], "tenant:t:a", true),
            (&["*:read"][..], "tenant:t:a", false),
            (
                &["events.service-lifecycle:subscribe"][..],
                "tenant:t:service-lifecycle:i1",
                true,
            ),
            (
                &["events.service-lifecycle:subscribe"][..],
                "tenant:t:service-lifecycle",
                true,
            ),
            (
                &["events.service-lifecycle:subscribe"][..],
                "tenant:t:service-lifecycles",
                false,
            ),
            (
                &["events.service-lifecycle:subscribe"][..],
                "tenant:t:billing",
                false,
            ),
            (
                &["events.service-lifecycle.i1:subscribe"][..],
                "tenant:t:service-lifecycle:i2",
                false,
            ),
            (&["events.chat:publish"][..], "tenant:t:chat", false),
        ];
        for (grants, channel, expected) in table {
            assert_eq!(
                allowed(grants, channel, Action::Subscribe),
                expected,
                "{grants:?} on {channel}"
            );
        }
        assert!(allowed(
            &["events.chat:publish"],
            "tenant:t:chat:room",
            Action::Publish
        ));
        assert!(!allowed(
            &["events:subscribe"],
            "tenant:t:chat",
            Action::Publish
        ));
    }
}
