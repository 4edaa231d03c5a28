//! One JSON POST to the webhook: plain HTTP/1.1 over TCP, or over TLS (OpenSSL, certificates
//! and host name verified against the system's CA store). The whole request, connect and TLS
//! handshake included, is bounded by one deadline: a receiver that accepts and never answers
//! costs at most that.

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The longest status line (and headers before it) read from a receiver.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("--notify-url must start with http:// or https://")]
    Scheme,
    #[error("--notify-url has no host")]
    NoHost,
    #[error("--notify-url has a port that is not a number from 1 to 65535")]
    Port,
    #[error("--notify-url may not carry a user or password before the host; put a token in the path, as Slack does")]
    UserInfo,
    #[error("--notify-url may hold only visible ASCII characters (percent-encode the rest)")]
    Characters,
}

/// A webhook address. Its path often holds a token (Slack's does): only [`Self::shown`] is ever
/// logged.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub tls: bool,
    /// Without brackets for an IPv6 address.
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookUrl({})", self.shown())
    }
}

impl WebhookUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        // Refused before anything else: a space or a line break in the path would end the
        // request line or add a header.
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(UrlError::Characters);
        }
        let (tls, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
            (false, rest)
        } else {
            return Err(UrlError::Scheme);
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(UrlError::NoHost)?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(UrlError::Port)?,
        };
        let path = path.split('#').next().unwrap_or_default();
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// Scheme and host (and a port other than the default): what logs and errors may show.
    pub fn shown(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }

    /// `host[:port]`, as the `Host` header wants it.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Why a POST did not deliver. None of these quote the URL's path.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot resolve the host: {0}")]
    Resolve(io::Error),
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(io::Error),
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("the receiver's answer is not HTTP")]
    BadResponse,
}

impl DeliveryError {
    /// A 4xx answer will be the same next time (a wrong or revoked URL): not retried.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Status(code) if (400..500).contains(code) && *code != 429)
    }
}

/// How TLS connections are checked. Built once per sender.
pub struct Tls {
    connector: SslConnector,
}

impl Tls {
    /// Certificates checked against the system's CA store (`SSL_CERT_FILE`/`SSL_CERT_DIR` when
    /// set, else the distribution's bundle), or against `ca_file` alone when given.
    pub fn new(ca_file: Option<PathBuf>) -> Result<Self, DeliveryError> {
        let tls = |e: openssl::error::ErrorStack| DeliveryError::Tls(e.to_string());
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls)?;
        builder.set_verify(SslVerifyMode::PEER);
        let ca_file = ca_file.or_else(|| {
            let probe = openssl_probe::probe();
            probe.cert_file.or_else(|| {
                // A folder of hashed certificates only: take the bundle distributions ship.
                probe
                    .cert_dir
                    .map(|d| d.join("ca-certificates.crt"))
                    .filter(|f| f.is_file())
            })
        });
        match ca_file {
            Some(file) => builder.set_ca_file(&file).map_err(tls)?,
            None => builder.set_default_verify_paths().map_err(tls)?,
        }
        Ok(Self {
            connector: builder.build(),
        })
    }
}

/// A socket whose every read and write gives up at one deadline, however the peer drips.
#[derive(Debug)]
struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
}

impl Deadlined {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// POST `body` as JSON to `url` within `limit`; a 2xx answer is delivered.
pub fn post_json(
    url: &WebhookUrl,
    body: &[u8],
    limit: Duration,
    tls: Option<&Tls>,
) -> Result<(), DeliveryError> {
    let deadline = Instant::now() + limit;
    let timed_out = |e: io::Error, other: fn(io::Error) -> DeliveryError| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => DeliveryError::TimedOut(limit),
        _ => other(e),
    };
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(DeliveryError::Resolve)?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DeliveryError::TimedOut(limit));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or_else(|| timed_out(last, DeliveryError::Connect))?;
    let _ = stream.set_nodelay(true);
    let socket = Deadlined { stream, deadline };
    let request = request_head(url, body.len());
    if url.tls {
        let tls = tls.ok_or_else(|| DeliveryError::Tls("no TLS settings".into()))?;
        let config = tls
            .connector
            .configure()
            .map_err(|e| DeliveryError::Tls(e.to_string()))?;
        let mut stream = config.connect(&url.host, socket).map_err(|e| match e {
            openssl::ssl::HandshakeError::Failure(mid) => {
                let io_timeout = mid
                    .error()
                    .io_error()
                    .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut);
                if io_timeout {
                    DeliveryError::TimedOut(limit)
                } else {
                    DeliveryError::Tls(mid.error().to_string())
                }
            }
            other => DeliveryError::Tls(other.to_string()),
        })?;
        exchange(&mut stream, &request, body, limit)
    } else {
        let mut socket = socket;
        exchange(&mut socket, &request, body, limit)
    }
}

fn request_head(url: &WebhookUrl, length: usize) -> String {
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: reconciler/{}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION"),
    )
}

/// Send the request, read the status line.
fn exchange(
    stream: &mut (impl Read + Write),
    head: &str,
    body: &[u8],
    limit: Duration,
) -> Result<(), DeliveryError> {
    let io = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => DeliveryError::TimedOut(limit),
        _ => DeliveryError::Io(e),
    };
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    stream.flush().map_err(io)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 || head.len() > MAX_RESPONSE_HEAD {
            return Err(DeliveryError::BadResponse);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let code = status_code(&head).ok_or(DeliveryError::BadResponse)?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(DeliveryError::Status(code))
    }
}

/// `HTTP/1.1 204 No Content` -> 204.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_are_parsed_and_shown_without_their_path() {
        let slack =
            WebhookUrl::parse("https://hooks.slack.com/services/T0/B0/XXXXsecretXXXX").unwrap();
        assert!(slack.tls);
        assert_eq!(slack.host, "hooks.slack.com");
        assert_eq!(slack.port, 443);
        assert_eq!(slack.path, "/services/T0/B0/XXXXsecretXXXX");
        assert_eq!(slack.shown(), "https://hooks.slack.com");
        assert!(!format!("{slack:?}").contains("XXXXsecret"));
        let local = WebhookUrl::parse("http://127.0.0.1:8080?token=abc#frag").unwrap();
        assert_eq!((local.port, local.path.as_str()), (8080, "/?token=abc"));
        assert_eq!(local.shown(), "http://127.0.0.1:8080");
        let v6 = WebhookUrl::parse("HTTP://[::1]:9000/hook").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
        assert_eq!(v6.shown(), "http://[::1]:9000");
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_them() {
        for (url, error) in [
            ("ftp://h/x", UrlError::Scheme),
            ("hooks.slack.com/x", UrlError::Scheme),
            ("https:///x", UrlError::NoHost),
            ("http://h:0/x", UrlError::Port),
            ("http://h:99999/x", UrlError::Port),
            ("https://user:tok-123@h/x", UrlError::UserInfo),
            ("http://h/x y", UrlError::Characters),
            ("http://h/x\r\nX-Injected: 1", UrlError::Characters),
        ] {
            let got = WebhookUrl::parse(url).unwrap_err();
            assert_eq!(got, error, "{url}");
            assert!(!got.to_string().contains("tok-123"));
        }
    }

    /// A one-request server: answers `answer` after reading the request, which it returns.
    fn serve_once(answer: &'static str) -> (WebhookUrl, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= len {
                        break;
                    }
                }
            }
            conn.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(got).unwrap()
        });
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hook/t0k?x=1")).unwrap();
        (url, handle)
    }

    #[test]
    fn a_post_carries_json_with_its_length_and_a_2xx_is_delivered() {
        let (url, server) = serve_once("HTTP/1.1 204 No Content\r\n\r\n");
        post_json(&url, br#"{"text":"hi"}"#, Duration::from_secs(5), None).unwrap();
        let request = server.join().unwrap();
        assert!(
            request.starts_with("POST /hook/t0k?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        for header in [
            "Host: 127.0.0.1:",
            "Content-Type: application/json\r\n",
            "Content-Length: 13\r\n",
        ] {
            assert!(request.contains(header), "{header} in {request}");
        }
        assert!(request.ends_with("\r\n\r\n{\"text\":\"hi\"}"), "{request}");
    }

    #[test]
    fn an_error_status_is_not_delivered_and_a_4xx_is_not_retried() {
        let (url, server) = serve_once("HTTP/1.1 404 Not Found\r\n\r\n");
        let e = post_json(&url, b"{}", Duration::from_secs(5), None).unwrap_err();
        server.join().unwrap();
        assert!(matches!(e, DeliveryError::Status(404)), "{e}");
        assert!(!e.is_retryable());
        assert!(DeliveryError::Status(503).is_retryable());
        assert!(DeliveryError::TimedOut(Duration::from_secs(1)).is_retryable());
    }

    #[test]
    fn a_receiver_that_never_answers_is_given_up_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        // Accepted by the kernel's backlog, never read nor answered.
        let e = post_json(&url, b"{}", Duration::from_millis(300), None).unwrap_err();
        assert!(matches!(e, DeliveryError::TimedOut(_)), "{e}");
        drop(listener);
    }

    #[test]
    fn tls_delivers_to_a_receiver_the_ca_store_vouches_for_and_refuses_any_other() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cert, key) = self_signed("127.0.0.1");
        let (other_cert, _) = self_signed("127.0.0.1");
        let ca = |c: &openssl::x509::X509| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), c.to_pem().unwrap()).unwrap();
            file
        };
        let (trusted, stranger) = (ca(&cert), ca(&other_cert));
        let server = std::thread::spawn(move || {
            let mut acceptor =
                openssl::ssl::SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
                    .unwrap();
            acceptor.set_certificate(&cert).unwrap();
            acceptor.set_private_key(&key).unwrap();
            let acceptor = acceptor.build();
            let mut requests = Vec::new();
            for _ in 0..2 {
                let (conn, _) = listener.accept().unwrap();
                if let Ok(mut tls) = acceptor.accept(conn) {
                    // The whole request (its body is `{}`), so closing resets nothing.
                    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
                    while !got.ends_with(b"\r\n\r\n{}") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    requests.push(String::from_utf8_lossy(&got).to_string());
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    let _ = tls.shutdown();
                }
            }
            requests
        });
        let url = WebhookUrl::parse(&format!("https://127.0.0.1:{port}/hook")).unwrap();
        let limit = Duration::from_secs(5);
        let tls = Tls::new(Some(trusted.path().to_path_buf())).unwrap();
        post_json(&url, b"{}", limit, Some(&tls)).unwrap();
        let tls = Tls::new(Some(stranger.path().to_path_buf())).unwrap();
        let e = post_json(&url, b"{}", limit, Some(&tls)).unwrap_err();
        assert!(matches!(e, DeliveryError::Tls(_)), "{e}");
        let requests = server.join().unwrap();
        assert_eq!(
            requests.len(),
            1,
            "only the verified connection sent a request"
        );
        assert!(
            requests[0].starts_with("POST /hook HTTP/1.1"),
            "{requests:?}"
        );
    }

    /// A certificate for `name` (an IP address), signed by itself.
    fn self_signed(
        name: &str,
    ) -> (
        openssl::x509::X509,
        openssl::pkey::PKey<openssl::pkey::Private>,
    ) {
        use openssl::x509::{extension::SubjectAlternativeName, X509NameBuilder, X509};
        use openssl::{asn1::Asn1Time, bn::BigNum, hash::MessageDigest, pkey::PKey, rsa::Rsa};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut subject = X509NameBuilder::new().unwrap();
        subject.append_entry_by_text("CN", name).unwrap();
        let subject = subject.build();
        let mut builder = X509::builder().unwrap();
        builder.set_version(2).unwrap();
        builder
            .set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        builder.set_subject_name(&subject).unwrap();
        builder.set_issuer_name(&subject).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        builder
            .set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .ip(name)
            .build(&builder.x509v3_context(None, None))
            .unwrap();
        builder.append_extension(san).unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        (builder.build(), key)
    }
}
