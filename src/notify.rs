//! Notifications to a webhook (`--notify-url`): a release applied, failed or rolled back, a
//! stack suspended. The loop and `apply` only put messages in a bounded queue
//! ([`Notifier::send`] never waits: when the queue is full the message is dropped and counted);
//! one sender thread posts them, each request bounded in time, retried a couple of times. So a
//! slow or failing receiver never holds up a pass.

pub mod http;
pub mod message;

pub use http::{DeliveryError, Tls, UrlError, WebhookUrl};
pub use message::{Event, Message, SuspensionWatch};

use crate::outcome::ServiceOutcome;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages waiting to be sent; more are dropped (a receiver that is down for a long time
/// must not grow the process).
pub const QUEUE_CAPACITY: usize = 256;
/// One request, connect and TLS handshake included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Delivers one message body; the sender thread retries by [`Retry`].
pub trait Deliver: Send + 'static {
    fn deliver(&mut self, body: &[u8]) -> Result<(), DeliveryError>;
}

/// Posts to the webhook URL.
pub struct HttpDeliver {
    url: WebhookUrl,
    tls: Option<Tls>,
}

impl HttpDeliver {
    pub fn new(url: WebhookUrl) -> Result<Self, DeliveryError> {
        let tls = if url.tls { Some(Tls::new(None)?) } else { None };
        Ok(Self { url, tls })
    }
}

impl Deliver for HttpDeliver {
    fn deliver(&mut self, body: &[u8]) -> Result<(), DeliveryError> {
        http::post_json(&self.url, body, REQUEST_TIMEOUT, self.tls.as_ref())
    }
}

/// Attempts per message, and the pauses between them.
#[derive(Debug, Clone)]
pub struct Retry {
    pub pauses: Vec<Duration>,
}

impl Default for Retry {
    /// Three attempts, 1 s and 3 s apart: a receiver's hiccup is covered, an outage is not
    /// worth holding the queue for.
    fn default() -> Self {
        Self {
            pauses: vec![Duration::from_secs(1), Duration::from_secs(3)],
        }
    }
}

/// How many messages were sent, failed after every attempt, or dropped because the queue was
/// full; shared with `/metrics`.
#[derive(Debug, Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    /// In the queue or being sent.
    pending: AtomicU64,
}

impl Counts {
    /// `(sent, failed, dropped)`.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// The queue's front: cheap to clone, and a no-op when no URL is set.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
    counts: Arc<Counts>,
}

struct Inner {
    queue: Mutex<Option<SyncSender<Message>>>,
    /// Closed by the sender thread when it has sent (or given up on) everything.
    done: Mutex<Option<Receiver<()>>>,
    host: String,
    shown: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(inner) => write!(f, "Notifier({})", inner.shown),
            None => write!(f, "Notifier(off)"),
        }
    }
}

impl Notifier {
    /// No notifications.
    pub fn off() -> Self {
        Self::default()
    }

    /// Notifications to `url` (from `--notify-url`); the URL is checked here, and only its
    /// scheme and host are ever shown.
    pub fn to_url(url: &str) -> Result<Self, NotifyError> {
        let url = WebhookUrl::parse(url)?;
        let shown = url.shown();
        let deliver = HttpDeliver::new(url).map_err(NotifyError::Tls)?;
        Ok(Self::start(
            shown,
            deliver,
            QUEUE_CAPACITY,
            Retry::default(),
        ))
    }

    /// A queue of `capacity` and the thread that empties it through `deliver`.
    pub fn start(shown: String, mut deliver: impl Deliver, capacity: usize, retry: Retry) -> Self {
        let (queue, messages) = mpsc::sync_channel::<Message>(capacity);
        let (done_tx, done) = mpsc::channel::<()>();
        let counts = Arc::new(Counts::default());
        let thread_counts = counts.clone();
        let thread_shown = shown.clone();
        let spawned = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                for message in messages {
                    let result = send_with_retries(&mut deliver, &message, &retry);
                    let counter = match &result {
                        Ok(()) => &thread_counts.sent,
                        Err(e) => {
                            tracing::warn!(
                                "notification ({} {}) to {thread_shown} not delivered: {e}",
                                message.event.as_str(),
                                message.stack
                            );
                            &thread_counts.failed
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    thread_counts.pending.fetch_sub(1, Ordering::Relaxed);
                }
                drop(done_tx);
            });
        if let Err(e) = spawned {
            tracing::warn!("notifications are off: cannot start their thread: {e}");
            return Self::off();
        }
        Self {
            inner: Some(Arc::new(Inner {
                queue: Mutex::new(Some(queue)),
                done: Mutex::new(Some(done)),
                host: hostname(),
                shown,
            })),
            counts,
        }
    }

    /// Where messages go (scheme and host), if anywhere.
    pub fn shown(&self) -> Option<&str> {
        self.inner.as_ref().map(|i| i.shown.as_str())
    }

    pub fn counts(&self) -> Arc<Counts> {
        self.counts.clone()
    }

    /// A service's outcome, as soon as it is recorded.
    pub fn outcome(&self, outcome: &ServiceOutcome) {
        if let Some(inner) = &self.inner {
            let at = crate::state::now_rfc3339();
            self.send(Message::of_outcome(outcome, &inner.host, &at));
        }
    }

    /// A stack the loop found suspended (`true`) or resumed.
    pub fn stack(&self, stack: &str, suspended: bool) {
        if let Some(inner) = &self.inner {
            let at = crate::state::now_rfc3339();
            self.send(Message::of_stack(stack, suspended, &inner.host, &at));
        }
    }

    /// Queue `message`, never waiting: a full queue drops it (counted).
    pub fn send(&self, message: Message) {
        let Some(inner) = &self.inner else { return };
        let queue = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = queue.as_ref() else {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counts.pending.fetch_add(1, Ordering::Relaxed);
        match queue.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                self.counts.pending.fetch_sub(1, Ordering::Relaxed);
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "notification ({} {}) dropped: the queue of messages for {} is full",
                    m.event.as_str(),
                    m.stack,
                    inner.shown
                );
            }
        }
    }

    /// Stop taking messages and wait at most `within` for those queued to go. Returns how
    /// many were still waiting at the end (said in a warning).
    pub fn finish(&self, within: Duration) -> u64 {
        let Some(inner) = &self.inner else { return 0 };
        drop(inner.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        let done = inner.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = done {
            // Disconnected when the thread ends; a timeout when the receiver is too slow.
            let _ = done.recv_timeout(within);
        }
        let left = self.counts.pending.load(Ordering::Relaxed);
        if left > 0 {
            tracing::warn!(
                "{left} notification{} to {} not sent within {}",
                if left == 1 { "" } else { "s" },
                inner.shown,
                humantime::format_duration(within)
            );
        }
        left
    }
}

fn send_with_retries(
    deliver: &mut impl Deliver,
    message: &Message,
    retry: &Retry,
) -> Result<(), DeliveryError> {
    let body = message.to_json();
    let mut pauses = retry.pauses.iter();
    loop {
        match deliver.deliver(&body) {
            Ok(()) => return Ok(()),
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => match pauses.next() {
                Some(pause) => {
                    tracing::debug!("notification not delivered ({e}); trying again");
                    std::thread::sleep(*pause);
                }
                None => return Err(e),
            },
        }
    }
}

/// The host's name, as messages name it.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is a valid, writable buffer of the length given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("--notify-url: cannot set up TLS: {0}")]
    Tls(DeliveryError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{Receiver, Sender};

    /// Delivers what it is let to, one message per token, and reports each body.
    struct Gated {
        gate: Receiver<Result<(), u16>>,
        seen: Sender<Vec<u8>>,
    }

    impl Deliver for Gated {
        fn deliver(&mut self, body: &[u8]) -> Result<(), DeliveryError> {
            // Seen first: a test knows the thread is inside a delivery.
            let _ = self.seen.send(body.to_vec());
            let verdict = self.gate.recv().unwrap_or(Ok(()));
            verdict.map_err(DeliveryError::Status)
        }
    }

    fn gated(
        capacity: usize,
        retry: Retry,
    ) -> (Notifier, Sender<Result<(), u16>>, Receiver<Vec<u8>>) {
        let (open, gate) = mpsc::channel();
        let (seen, bodies) = mpsc::channel();
        let notifier = Notifier::start(
            "http://receiver".into(),
            Gated { gate, seen },
            capacity,
            retry,
        );
        (notifier, open, bodies)
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_waits_for_the_receiver() {
        let (notifier, open, bodies) = gated(2, Retry::default());
        // The thread takes the first and hangs in its delivery; two fill the queue; two drop.
        notifier.stack("s0", true);
        let first = bodies.recv().unwrap();
        for i in 1..5 {
            notifier.stack(&format!("s{i}"), true);
        }
        assert_eq!(notifier.counts().get(), (0, 0, 2));
        for _ in 0..3 {
            open.send(Ok(())).unwrap();
        }
        assert_eq!(notifier.finish(Duration::from_secs(5)), 0);
        assert_eq!(notifier.counts().get(), (3, 0, 2));
        let stacks: Vec<String> = std::iter::once(first)
            .chain(bodies.try_iter())
            .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap()["stack"].to_string())
            .collect();
        assert_eq!(stacks, ["\"s0\"", "\"s1\"", "\"s2\""]);
    }

    #[test]
    fn a_failing_receiver_is_tried_a_few_times_then_counted_failed() {
        let retry = Retry {
            pauses: vec![Duration::ZERO, Duration::ZERO],
        };
        let (notifier, open, bodies) = gated(8, retry);
        for verdict in [Err(503), Err(503), Err(503), Err(404), Err(503), Ok(())] {
            open.send(verdict).unwrap();
        }
        notifier.stack("a", true); // 503 three times: failed
        notifier.stack("b", true); // 404: not retried, failed
        notifier.stack("c", true); // 503 then delivered
        notifier.finish(Duration::from_secs(5));
        assert_eq!(notifier.counts().get(), (1, 2, 0));
        assert_eq!(bodies.try_iter().count(), 6);
    }

    #[test]
    fn finish_waits_a_bounded_time_for_a_receiver_that_hangs() {
        let (notifier, _open, _bodies) = gated(8, Retry::default());
        notifier.stack("a", true);
        notifier.stack("b", true);
        assert_eq!(notifier.finish(Duration::from_millis(100)), 2);
        notifier.stack("late", true);
        assert_eq!(
            notifier.counts().get(),
            (0, 0, 1),
            "nothing is taken after finish"
        );
    }

    #[test]
    fn without_a_url_nothing_is_queued() {
        let notifier = Notifier::off();
        notifier.stack("a", true);
        assert_eq!(notifier.finish(Duration::ZERO), 0);
        assert_eq!(notifier.counts().get(), (0, 0, 0));
        assert_eq!(notifier.shown(), None);
    }

    #[test]
    fn a_bad_url_is_refused_at_start_without_quoting_it() {
        let e = Notifier::to_url("hooks.example/services/tok-s3cr3t").unwrap_err();
        assert!(!e.to_string().contains("tok-s3cr3t"), "{e}");
    }
}
