//! Everything the program reports goes through `tracing`: progress at info, trouble at warn and
//! error. `--log-format text` prints `stack/service: message` lines for a person (or journald);
//! `--log-format json` prints one object per event with `stack`, `service` and `revision` fields.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Who an event is about. Every progress event carries these as fields.
#[derive(Debug, Clone)]
pub struct Who {
    pub stack: String,
    pub service: String,
    /// The commit (short) or `working-copy`.
    pub revision: String,
}

impl Who {
    pub fn new(stack: &str, service: &str, revision: &str) -> Self {
        Self {
            stack: stack.to_string(),
            service: service.to_string(),
            revision: revision.chars().take(12).collect(),
        }
    }

    pub fn of(stack: &crate::desired::Stack, service: &str) -> Self {
        Self::new(&stack.name, service, &stack.revision)
    }

    /// An event about the stack as a whole.
    pub fn stack(stack: &crate::desired::Stack) -> Self {
        Self::new(&stack.name, "", &stack.revision)
    }
}

/// A progress event about a service: `progress!(who, "creating {name}")`, optionally with more
/// fields before the message (`progress!(who, elapsed_s = 3, "waiting")`).
#[macro_export]
macro_rules! progress {
    ($who:expr, $($rest:tt)+) => {
        ::tracing::info!(
            stack = %$who.stack,
            service = %$who.service,
            revision = %$who.revision,
            $($rest)+
        )
    };
}

/// Set up the global subscriber. `level` is the most detailed level shown for this crate;
/// `RECONCILER_LOG` (an env-filter directive) overrides it.
pub fn init(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RECONCILER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("reconciler={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.event_format(TextFormat).init();
    }
}

/// `stack/service: message key=value`, with `warning: `/`error: ` in front of trouble. No time
/// stamp: journald and terminals add their own.
pub struct TextFormat;

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = TextFields::default();
        event.record(&mut fields);
        writeln!(writer, "{}", fields.line(*event.metadata().level()))
    }
}

#[derive(Default)]
struct TextFields {
    message: String,
    stack: Option<String>,
    service: Option<String>,
    extra: Vec<(String, String)>,
}

impl TextFields {
    fn line(&self, level: Level) -> String {
        let prefix = match level {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::DEBUG | Level::TRACE => "debug: ",
            Level::INFO => "",
        };
        let who = match (&self.stack, &self.service) {
            (Some(stack), Some(service)) if !service.is_empty() => format!("{stack}/{service}: "),
            (Some(stack), _) => format!("{stack}: "),
            _ => String::new(),
        };
        let mut line = format!("{prefix}{who}{}", self.message);
        for (key, value) in &self.extra {
            line.push_str(&format!(" {key}={value}"));
        }
        line
    }
}

/// Fields that the text line shows through its message already.
const SHOWN_IN_MESSAGE: &[&str] = &[
    "revision",
    "elapsed_s",
    "timeout_s",
    "health",
    "current_mb",
    "total_mb",
    "retry_in_s",
    "changed",
    "failed",
];

impl Visit for TextFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl TextFields {
    fn record(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "stack" => self.stack = Some(value),
            "service" => self.service = Some(value),
            name if SHOWN_IN_MESSAGE.contains(&name) => {}
            name => self.extra.push((name.to_string(), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_line_names_the_service_and_marks_trouble() {
        let fields = TextFields {
            message: "creating web-1".into(),
            stack: Some("shop".into()),
            service: Some("web".into()),
            extra: vec![],
        };
        assert_eq!(fields.line(Level::INFO), "shop/web: creating web-1");
        assert_eq!(
            fields.line(Level::WARN),
            "warning: shop/web: creating web-1"
        );
        let stack_only = TextFields {
            service: Some(String::new()),
            ..fields
        };
        assert_eq!(stack_only.line(Level::INFO), "shop: creating web-1");
    }
}
