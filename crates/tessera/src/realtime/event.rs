//! One published event: the envelope every transport carries, serialized once and shared by
//! every subscriber it fans out to.

use std::sync::Arc;

use serde::Serialize;

/// The envelope as clients receive it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Envelope {
    /// The event id: increasing in publish order on every channel, the same on every
    /// instance, and what `Last-Event-ID` and `since` resume after.
    pub id: i64,
    /// The channel it was published to.
    pub channel: String,
    /// Its type (`service.provisioning.progress`); SSE's `event:` field.
    #[serde(rename = "type")]
    pub kind: String,
    /// The publisher's payload.
    pub data: serde_json::Value,
    /// When it was published, Unix milliseconds.
    pub time: i64,
}

/// An event ready to send: the envelope and its JSON, rendered once.
#[derive(Debug)]
pub struct Event {
    /// The envelope.
    pub envelope: Envelope,
    /// `envelope` as JSON.
    pub json: Arc<str>,
}

impl Event {
    /// Renders `envelope` once for every transport.
    pub fn new(envelope: Envelope) -> Arc<Self> {
        let json = serde_json::to_string(&envelope)
            .unwrap_or_else(|_| "{}".to_owned())
            .into();
        Arc::new(Self { envelope, json })
    }

    /// The event id.
    pub fn id(&self) -> i64 {
        self.envelope.id
    }

    /// The WebSocket message carrying it: `{"type":"event","event":<envelope>}`.
    pub fn ws_text(&self) -> String {
        format!(r#"{{"type":"event","event":{}}}"#, self.json)
    }
}
