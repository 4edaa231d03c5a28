//! `--listen`: `/healthz`, `/status` (JSON), `/metrics` (Prometheus text 0.0.4) and `POST /hooks/git`,
//! which triggers a pass at once when the request is signed with the shared secret.
//!
//! Anyone who can reach the address can open connections: each must send a complete request
//! head within the idle timeout (also between keep-alive requests), at most `max_connections`
//! are served at once (the rest wait in the kernel's backlog, using no descriptor here), and a
//! webhook body is at most [`MAX_HOOK_BODY`].

use crate::reconciler::{Heartbeat, SharedStatus};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// The largest webhook body read; forges send a few KiB.
pub const MAX_HOOK_BODY: usize = 1 << 20;

#[derive(Clone)]
pub struct ServerState {
    pub status: SharedStatus,
    pub trigger: Arc<Notify>,
    pub webhook_secret: Option<String>,
    /// When the loop last finished a pass: `/healthz` fails when it is overdue.
    pub heartbeat: Heartbeat,
    /// `--unhealthy-after`, for the message.
    pub unhealthy_after: Duration,
    /// Also the longest a webhook body may take to arrive.
    pub idle_timeout: Duration,
    /// Where services' current runbook activities and the runbook counters are read from.
    pub state_dir: Arc<crate::state::StateDir>,
}

/// Bounds on what clients of `--listen` can hold.
/// No connection on `--listen` lives longer than this many `--http-idle-timeout`s.
pub const CONNECTION_LIFE_IN_IDLE_TIMEOUTS: u32 = 4;

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/hooks/git", post(hook))
        .with_state(state)
}

/// Serve `app` on `listener` until the process ends, within `limits`.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, limits: HttpLimits) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        // Take a permit before accepting: a connection over the limit stays in the backlog.
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: give the passes room, then try again.
                tracing::warn!("--listen: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.idle_timeout);
            // A client that pipelines requests and never reads the answers would keep its
            // permit forever (the head timeout only bounds waiting for a request).
            let _ = tokio::time::timeout(
                limits.idle_timeout * CONNECTION_LIFE_IN_IDLE_TIMEOUTS,
                http.serve_connection(TokioIo::new(stream), service),
            )
            .await;
        });
    }
}

/// 200 while passes keep completing; 503 with the reason when none has for `unhealthy_after`
/// past the time the next one was due (a stuck remote, a wedged engine), so a supervisor can
/// notice.
async fn healthz(State(s): State<ServerState>) -> Response {
    if let Some(age) = s.heartbeat.overdue() {
        let body = format!(
            "unhealthy: no pass has completed for {}s, more than --unhealthy-after ({}s) past when one was due\n",
            age.as_secs(),
            s.unhealthy_after.as_secs()
        );
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    "ok\n".into_response()
}

async fn status(State(s): State<ServerState>) -> Response {
    let st = s.status.lock().expect("status lock");
    let since = |t: Option<SystemTime>| t.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs());
    let body = serde_json::json!({
        "last_pass": st.last_report,
        "last_error": st.last_error,
        "seconds_since_last_success": since(st.last_success),
        "passes": st.passes(),
        "recent_passes": st.recent,
        "activities": s.state_dir.activities(),
        "last_backups": s.state_dir.last_backups(),
    });
    axum::Json(body).into_response()
}

async fn metrics(State(s): State<ServerState>) -> Response {
    let counts = s.state_dir.counters();
    let st = s.status.lock().expect("status lock");
    st.metrics.show_runbook_counts(&counts);
    if let Some(notifications) = &st.notifications {
        st.metrics.show_notification_counts(notifications.get());
    }
    let body = st.metrics.encode();
    ([("content-type", crate::metrics::CONTENT_TYPE)], body).into_response()
}

async fn hook(State(s): State<ServerState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let read = axum::body::to_bytes(body, MAX_HOOK_BODY);
    let body = match tokio::time::timeout(s.idle_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_HOOK_BODY} bytes\n"),
            )
                .into_response()
        }
        Err(_) => return (StatusCode::REQUEST_TIMEOUT, "body too slow\n").into_response(),
    };
    if let Some(secret) = &s.webhook_secret {
        if !signed(secret, &headers, &body) {
            tracing::warn!("webhook refused: missing or bad signature");
            return (StatusCode::UNAUTHORIZED, "bad signature\n").into_response();
        }
    }
    s.trigger.notify_one();
    (StatusCode::ACCEPTED, "sync triggered\n").into_response()
}

/// GitHub (`X-Hub-Signature-256: sha256=<hex>`), Gitea/Forgejo (`X-Gitea-Signature: <hex>`), both
/// HMAC-SHA256 of the body; GitLab (`X-Gitlab-Token: <secret>`).
pub fn signed(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    // An empty secret signs nothing (an empty GitLab token would match it); `run` refuses one.
    if secret.is_empty() {
        return false;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(sig) = header("x-hub-signature-256").and_then(|v| v.strip_prefix("sha256=")) {
        return hmac_matches(secret, body, sig);
    }
    if let Some(sig) = header("x-gitea-signature").or(header("x-forgejo-signature")) {
        return hmac_matches(secret, body, sig);
    }
    if let Some(token) = header("x-gitlab-token") {
        return constant_time_eq(token.as_bytes(), secret.as_bytes());
    }
    false
}

fn hmac_matches(secret: &str, body: &[u8], hex_sig: &str) -> bool {
    let Some(sig) = decode_hex(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac takes any key");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github_signature(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!(
            "sha256={}",
            crate::desired::hex(&mac.finalize().into_bytes())
        )
    }

    #[test]
    fn a_github_signature_made_with_the_secret_is_accepted_and_any_other_refused() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-hub-signature-256",
            github_signature("s3cret", body).parse().unwrap(),
        );
        assert!(signed("s3cret", &headers, body));
        assert!(!signed("other", &headers, body));
        assert!(!signed("s3cret", &headers, b"tampered"));
        assert!(
            !signed("s3cret", &HeaderMap::new(), body),
            "unsigned is refused"
        );
    }

    #[test]
    fn a_gitlab_token_must_match_exactly() {
        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-token", "s3cret".parse().unwrap());
        assert!(signed("s3cret", &headers, b""));
        assert!(!signed("s3cre", &headers, b""));
    }

    #[test]
    fn an_empty_secret_accepts_nothing_not_even_an_empty_gitlab_token() {
        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-token", "".parse().unwrap());
        assert!(!signed("", &headers, b""));
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text_from_the_shared_status() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = crate::state::StateDir::new(dir.path());
        state_dir.count(crate::state::runbook::RunbookCounter::JobFailed);
        let status = SharedStatus::default();
        let report = crate::reconciler::PassReport::default();
        status
            .lock()
            .unwrap()
            .record(Duration::from_millis(20), &Ok(report));
        let state = ServerState {
            status,
            trigger: Arc::new(Notify::new()),
            webhook_secret: None,
            heartbeat: Heartbeat::new(Duration::from_secs(60)),
            unhealthy_after: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(1),
            state_dir: Arc::new(state_dir),
        };
        let response = metrics(State(state)).await;
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.lines().any(|l| l == "reconciler_passes_total 1"),
            "{body}"
        );
        // Runbook steps are counted in the state dir, by the loop or a command run by hand.
        assert!(
            body.lines()
                .any(|l| l == r#"reconciler_jobs_total{result="failed"} 1"#),
            "{body}"
        );
    }
}
