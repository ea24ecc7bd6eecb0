//! Just enough of the `text/event-stream` format (HTML Living Standard, "server-sent events")
//! to follow Tessera's revocation stream: `id`, `event`, `data` and comments, lines ending in
//! LF, CRLF or CR, events ending at a blank line.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `id` field, if the event had one.
    pub id: Option<String>,
    /// The `event` field (`message` when absent).
    pub event: String,
    /// The `data` lines, joined by LF.
    pub data: String,
}

/// Longest event accepted; a stream sending more is broken or hostile.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Why a stream cannot be parsed further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    /// An event or line beyond [`MAX_EVENT_BYTES`].
    #[error("event too large")]
    TooLarge,
    /// Not UTF-8.
    #[error("event stream is not UTF-8")]
    NotUtf8,
}

/// Turns received bytes into events.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buffer: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    size: usize,
    /// A CR ended the last line; an LF right after it belongs to it.
    after_cr: bool,
}

impl Parser {
    /// Feeds `bytes`, returning the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut events = Vec::new();
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.buffer);
                    let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
                    if let Some(event) = self.line(&line) {
                        events.push(event);
                    }
                }
                _ => {
                    self.buffer.push(byte);
                    self.size += 1;
                    if self.size > MAX_EVENT_BYTES {
                        return Err(SseError::TooLarge);
                    }
                }
            }
        }
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            self.size = 0;
            let data = self.data.take();
            let event = self.event.take();
            // Like a browser: an event without data is not dispatched, but its id counts.
            let id = self.id.clone();
            return data.map(|data| Event {
                id,
                event: event.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::default();
        chunks
            .iter()
            .flat_map(|c| parser.push(c).expect("parses"))
            .collect()
    }

    #[test]
    fn events_split_across_chunks_and_line_endings_are_reassembled() {
        let events = all(&[
            b": keep-alive\n\nid: 7\nevent: revocation\nda",
            b"ta: {\"a\":1}\r\n\r",
            b"\nid: 9\r",
            b"event: ready\rdata: caught up\r\r",
        ]);
        assert_eq!(
            events,
            vec![
                Event {
                    id: Some("7".into()),
                    event: "revocation".into(),
                    data: "{\"a\":1}".into()
                },
                Event {
                    id: Some("9".into()),
                    event: "ready".into(),
                    data: "caught up".into()
                },
            ]
        );
    }

    #[test]
    fn multi_line_data_joins_and_the_last_id_carries_over() {
        let events = all(&[b"id: 3\ndata: a\ndata: b\n\ndata:c\n\n"]);
        assert_eq!(events[0].data, "a\nb");
        assert_eq!(events[1].id.as_deref(), Some("3"));
        assert_eq!(events[1].event, "message");
        assert_eq!(events[1].data, "c");
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(parser.push(&big), Err(SseError::TooLarge));
        let mut parser = Parser::default();
        assert_eq!(parser.push(b"data: \xff\n"), Err(SseError::NotUtf8));
    }
}
