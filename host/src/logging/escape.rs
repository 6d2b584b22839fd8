//! Escaping of untrusted text in text-format logs, so that no field can start a new log line,
//! move the cursor, or colour the terminal.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// Whether `c` must not reach a text log as is: control characters (C0, DEL, C1: newlines,
/// carriage returns, tabs, ESC of ANSI sequences), Unicode line and paragraph separators,
/// and bidirectional overrides (which reorder what a reader sees).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character of [`needs_escape`] written as an escape: `\n`, `\r`, `\t`, or
/// `\u{XX}` for the others. Borrowed (no copy) when nothing needs escaping.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Field formatter of the text log format: like tracing's default (`message`, then
/// `name=value` pairs separated by spaces, string fields quoted), but every value goes through
/// [`escape_control`]. A plugin's message (or an error text it caused) cannot forge a line.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, text: &str) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        let text = escape_control(text);
        self.result = match field.name() {
            "message" => write!(self.writer, "{separator}{text}"),
            name => write!(
                self.writer,
                "{separator}{}={text}",
                name.strip_prefix("r#").unwrap_or(name)
            ),
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, value);
        } else {
            // Quoted like tracing's default formatter does for string fields.
            self.write(field, &format!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(escape_control("plain text é"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("a\nERROR forged\r\t\x1b[31mred\u{7f}\u{2028}\u{202e}"),
            "a\\nERROR forged\\r\\t\\u{1b}[31mred\\u{7f}\\u{2028}\\u{202e}"
        );
    }

    #[test]
    fn text_logs_escape_every_field_value() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let message = "hello\n2026-01-01T00:00:00Z ERROR forged";
            let error = "trap\nsecond line";
            tracing::info!(plugin = "p", tenant = "t\x1b[2J", error = %error, "{message}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "one event, one line: {text:?}");
        assert!(
            text.contains("hello\\n2026-01-01T00:00:00Z ERROR forged"),
            "{text}"
        );
        assert!(text.contains("error=trap\\nsecond line"), "{text}");
        assert!(text.contains("tenant=\"t\\u{1b}[2J\""), "{text}");
        assert!(!text.contains('\x1b'), "{text:?}");
    }
}
