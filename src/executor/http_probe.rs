//! `x-reconciler.http_probe`: a plain HTTP GET from the host, tried until it answers 2xx.
//! The server is the new container, so it is hostile input: each try is bounded in time
//! (however slowly it trickles bytes) and in memory (only the status line is read).

use super::readiness::POLL;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// One try: connect, send, read the status line.
const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest status line read; a longer one is not HTTP.
const MAX_STATUS_LINE: usize = 1024;
/// The reason phrase as quoted in a failure, at most.
const MAX_REASON: usize = 64;

/// GET the URL until it answers 2xx or `deadline` passes; the error names the last answer or
/// error (`answered 500 Internal Server Error`, `connection refused`).
pub(super) async fn probe_until(url: &str, deadline: Instant) -> Result<(), String> {
    let (host, path) = split_url(url)?;
    let mut last = String::from("no try before the deadline");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        let budget = TRY_TIMEOUT.min(left);
        last = match tokio::time::timeout(budget, status_of(host, &path)).await {
            Ok(Ok(status)) if (200..300).contains(&status.code) => return Ok(()),
            Ok(Ok(status)) => format!("answered {status}"),
            Ok(Err(e)) => e,
            Err(_) => format!(
                "no HTTP status line within {}",
                humantime::format_duration(budget)
            ),
        };
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// `http://host:port/path` into the address and the request target (`/` when none).
fn split_url(url: &str) -> Result<(&str, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "not an http:// URL".to_string())?;
    Ok(match rest.split_once('/') {
        Some((host, path)) => (host, format!("/{path}")),
        None => (rest, "/".to_string()),
    })
}

#[derive(Debug, PartialEq, Eq)]
struct Status {
    code: u16,
    reason: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {}", self.code, self.reason)
        }
    }
}

async fn status_of(host: &str, path: &str) -> Result<Status, String> {
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("cannot connect to {host}: {}", io_reason(&e)))?;
    // HTTP/1.1 servers answer HTTP/1.0 too; `close` so none keeps the connection for more.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {}", io_reason(&e)))?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            return parse_status_line(&head[..end]);
        }
        if head.len() > MAX_STATUS_LINE {
            return Err(format!(
                "not an HTTP answer (no status line in its first {MAX_STATUS_LINE} bytes)"
            ));
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the answer failed: {}", io_reason(&e)))?;
        if n == 0 {
            // A bare `\n` ends a line for lenient servers; nothing at all is no answer.
            return match head.iter().position(|b| *b == b'\n') {
                Some(end) => parse_status_line(&head[..end]),
                None if head.is_empty() => Err("closed the connection without answering".into()),
                None => Err("closed the connection in the middle of its status line".into()),
            };
        }
        head.extend_from_slice(&buf[..n]);
    }
}

/// `HTTP/1.1 200 OK` (RFC 9112 status-line: version, space, three digits, space, reason).
fn parse_status_line(line: &[u8]) -> Result<Status, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| not_http(line))?;
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default();
    let version_ok = version
        .strip_prefix("HTTP/")
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            major.len() == 1
                && minor.len() == 1
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
    if !version_ok || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_http(line));
    }
    let code: u16 = code.parse().map_err(|_| not_http(line))?;
    if !(100..=599).contains(&code) {
        return Err(not_http(line));
    }
    Ok(Status {
        code,
        reason: printable(reason, MAX_REASON),
    })
}

fn not_http(line: &[u8]) -> String {
    let shown = printable(&String::from_utf8_lossy(line), MAX_REASON);
    format!("not an HTTP answer: {shown:?}")
}

/// Text from the container, fit for one line of a log: printable ASCII, bounded.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::TcpListener;

    #[test]
    fn a_status_line_is_version_three_digits_and_a_reason() {
        let ok = |line: &str| parse_status_line(line.as_bytes());
        assert_eq!(
            ok("HTTP/1.1 200 OK").unwrap(),
            Status {
                code: 200,
                reason: "OK".into()
            }
        );
        assert_eq!(ok("HTTP/1.0 204 ").unwrap().code, 204);
        assert_eq!(ok("HTTP/1.1 503\r").unwrap().to_string(), "503");
        assert_eq!(
            ok("HTTP/1.1 500 Internal Server Error")
                .unwrap()
                .to_string(),
            "500 Internal Server Error"
        );
        for bad in [
            "",
            "SSH-2.0-OpenSSH_9.6",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1 +20 OK",
            "HTTP/11 200 OK",
            "HTTP/1.1 099 Low",
            "http/1.1 200 OK",
            "200 OK",
        ] {
            let e = ok(bad).unwrap_err();
            assert!(e.starts_with("not an HTTP answer"), "{bad}: {e}");
        }
    }

    #[test]
    fn what_the_server_says_is_quoted_printable_and_bounded() {
        let long = format!("HTTP/1.1 500 {}\u{1b}[31m", "x".repeat(500));
        let status = parse_status_line(long.as_bytes()).unwrap();
        assert_eq!(status.reason.len(), MAX_REASON);
        assert!(status.reason.chars().all(|c| c == 'x'));
    }

    /// A server on a free loopback port that answers each connection with `answer(n)` (n counts
    /// from 0) and closes it.
    async fn server(answer: impl Fn(usize) -> Vec<u8> + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let bytes = answer(n);
                tokio::spawn(async move {
                    let mut req = [0u8; 1024];
                    let _ = conn.read(&mut req).await;
                    if bytes.is_empty() {
                        return; // closes without a word
                    }
                    let _ = conn.write_all(&bytes).await;
                    // An HTTP/1.1 server may keep the connection open; this one does for a while.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        format!("http://{addr}/health")
    }

    fn soon(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn an_http11_server_that_keeps_the_connection_open_passes_on_200() {
        let url = server(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()).await;
        probe_until(&url, soon(10)).await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_answers_500_then_200_passes() {
        let url = server(|n| {
            if n < 2 {
                b"HTTP/1.1 500 Internal Server Error\r\n\r\n".to_vec()
            } else {
                b"HTTP/1.1 200 OK\r\n\r\n".to_vec()
            }
        })
        .await;
        probe_until(&url, soon(10)).await.unwrap();
    }

    #[tokio::test]
    async fn a_redirect_is_not_ready_and_the_failure_names_the_last_status() {
        let url = server(|_| b"HTTP/1.1 302 Found\r\nLocation: /login\r\n\r\n".to_vec()).await;
        let e = probe_until(&url, soon(1)).await.unwrap_err();
        assert_eq!(e, "answered 302 Found");
    }

    #[tokio::test]
    async fn a_server_that_trickles_its_status_line_fails_each_try_on_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    for b in b"HTTP/1.1 200 OK".iter().cycle() {
                        if conn.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                });
            }
        });
        let e = probe_until(&format!("http://{addr}/"), soon(3))
            .await
            .unwrap_err();
        assert!(e.starts_with("no HTTP status line within"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_sends_endless_bytes_without_a_line_is_not_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let junk = [b'A'; 4096];
                    while conn.write_all(&junk).await.is_ok() {}
                });
            }
        });
        let e = probe_until(&format!("http://{addr}/"), soon(1))
            .await
            .unwrap_err();
        assert!(e.starts_with("not an HTTP answer (no status line"), "{e}");
    }

    #[tokio::test]
    async fn nothing_listening_fails_with_connection_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = probe_until(&format!("http://127.0.0.1:{port}/"), soon(1))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!("cannot connect to 127.0.0.1:{port}: connection refused")
        );
    }

    #[tokio::test]
    async fn a_server_that_closes_without_answering_says_so() {
        let url = server(|_| Vec::new()).await;
        let e = probe_until(&url, soon(1)).await.unwrap_err();
        assert_eq!(e, "closed the connection without answering");
    }
}
