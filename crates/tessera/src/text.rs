//! Rules for text that people read and compare: emails, usernames, display names. Characters
//! that are invisible or reorder what is shown (Unicode format characters, bidi controls,
//! line separators) let two different values look identical in a console or an audit log
//! (`admin\u{200B}@example.com`, `moc.elpmaxe@\u{202E}…`), so every such field refuses them.

/// Whether `c` is a control character, a Unicode format character (general category `Cf`:
/// zero-width spaces and joiners, bidi embeddings, overrides and isolates, the byte-order
/// mark, invisible operators, tag characters…), a line or paragraph separator, or another
/// default-ignorable filler that renders as nothing.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Cf, as of Unicode 16.
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
                // Zl, Zp.
                | '\u{2028}'
                | '\u{2029}'
                // Default-ignorable fillers outside Cf that also show as nothing.
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180D}'
                | '\u{180F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Whether `text` holds any character [`is_hidden`] refuses.
pub fn has_hidden(text: &str) -> bool {
    text.chars().any(is_hidden)
}

/// A regular-expression character class of every [`is_hidden`] character, derived from it (so
/// the published schemas and the check cannot drift): ranges of the characters themselves,
/// control characters as `\xNN`, which ECMA-262 and the other common dialects read alike.
pub fn hidden_class() -> String {
    let mut class = String::from("[");
    let mut run: Option<(char, char)> = None;
    let push = |class: &mut String, c: char| {
        if c.is_control() {
            class.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            class.push(c);
        }
    };
    let close = |class: &mut String, (first, last): (char, char)| {
        push(class, first);
        if last != first {
            class.push('-');
            push(class, last);
        }
    };
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        match run {
            Some((first, last)) if is_hidden(c) && u32::from(last) + 1 == u32::from(c) => {
                run = Some((first, c));
            }
            _ if is_hidden(c) => {
                if let Some(done) = run.replace((c, c)) {
                    close(&mut class, done);
                }
            }
            _ => {}
        }
    }
    if let Some(done) = run {
        close(&mut class, done);
    }
    class.push(']');
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_reordering_characters_are_hidden() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{2028}',
            '\u{E0041}',
            '\u{061C}',
            '\u{0000}',
            '\u{007F}',
            '\u{3164}',
            '\u{FE0F}',
        ] {
            assert!(is_hidden(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn ordinary_letters_of_any_script_are_not() {
        for text in [
            "Ada Lovelace",
            "Zoë",
            "José",
            "Łukasz",
            "李小龍",
            "محمد",
            "Ωμέγα",
            "ß",
        ] {
            assert!(!has_hidden(text), "{text}");
        }
    }

    #[test]
    fn the_hidden_class_names_hidden_characters_and_no_others() {
        let class = hidden_class();
        assert!(class.starts_with("[\\x00-\\x1f\\x7f-\\x9f"), "{class}");
        for c in ['\u{00AD}', '\u{200B}', '\u{202E}', '\u{E0001}'] {
            assert!(class.contains(c), "{c:?} in {class}");
        }
        for c in ['a', ' ', 'é', '\u{1F600}'] {
            assert!(!class.contains(c), "{c:?} not in {class}");
        }
    }
}
