//! `x-reconciler.http_probe`: a plain HTTP/1.0 GET from the host, until it answers 2xx.

use super::readiness::POLL;
use std::time::Duration;
use tokio::time::Instant;

/// GET the URL until it answers 2xx or the deadline passes (plain HTTP/1.0 over TCP).
pub(super) async fn probe_until(url: &str, deadline: Instant) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), http_status(host, &path)).await {
            Ok(Ok(code)) if (200..300).contains(&code) => return Ok(()),
            Ok(Ok(code)) => last = format!("status {code}"),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(last)
}

async fn http_status(host: &str, path: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}
