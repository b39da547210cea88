//! How requests reach one engine: base URL or unix socket, path prefix (DCE
//! proxies), auth header, TLS, timeouts, retries for reads, API version
//! negotiation, and a count of every call.

use super::error::{EngineError, ErrorKind, classify};
use crate::fence::Fence;
use crate::retry;
use crate::secret::SecretString;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

/// The oldest Engine API we speak: Engine 17.06, as shipped with DCE 2.x.
pub(crate) const MIN_API_VERSION: (u32, u32) = (1, 30);

/// Credentials sent with every request. Never logged, never in errors.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        username: String,
        password: SecretString,
    },
    /// DCE's `X-DCE-Access-Token` header.
    Token(SecretString),
}

impl Auth {
    fn header(&self) -> Result<Option<(HeaderName, HeaderValue)>, String> {
        use base64::Engine as _;
        let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let (name, value) = match self {
            Auth::None => return Ok(None),
            Auth::Basic { username, password } => (
                reqwest::header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    encode(format!("{username}:{}", password.expose()).as_bytes())
                ),
            ),
            Auth::Token(t) => (
                HeaderName::from_static("x-dce-access-token"),
                t.expose().to_owned(),
            ),
        };
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            "credentials contain characters not allowed in an HTTP header".to_owned()
        })?;
        v.set_sensitive(true);
        Ok(Some((name, v)))
    }
}

/// TLS settings for https endpoints.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// PEM CA bundle to trust instead of the system's roots.
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key (Docker's TLS client auth).
    pub(crate) identity_pem: Option<SecretBytes>,
    /// Accept any server certificate. Logged as a warning.
    pub(crate) insecure_skip_verify: bool,
}

/// Key material that never prints.
#[derive(Clone, Default)]
pub(crate) struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Timeouts and pool sizes shared by every engine of a cluster.
#[derive(Clone, Debug)]
pub struct Limits {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    /// Requests in flight at once to all engines of a cluster (event
    /// streams aside), and as many connections kept open for them: a
    /// thousand nodes behind one DCE controller share its connections
    /// instead of opening and closing one per call.
    pub(crate) in_flight: usize,
    /// Attempts for idempotent reads that fail transiently.
    pub(crate) read_attempts: u32,
    /// The largest answer read; a bigger one is an error, never a reason
    /// to run out of memory. Sized for a node's containers or a large
    /// service's tasks, far below the operator's memory limit.
    pub(crate) max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            in_flight: 256,
            read_attempts: 3,
            max_body: 32 << 20,
        }
    }
}

/// Counts of API calls by (node, method, status), for tests, benchmarks and
/// metrics. Status 0 means no answer.
#[derive(Debug, Default)]
pub(crate) struct CallLog {
    counts: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    fenced: AtomicU64,
    last_mutation_ms: AtomicU64,
    /// Event streams being followed now.
    streams: AtomicU64,
}

/// Counts one followed event stream while it lives.
#[derive(Debug)]
pub(crate) struct StreamCount(Arc<CallLog>);

impl Drop for StreamCount {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CallLog {
    fn record(&self, node: &str, method: &'static str, status: u16) {
        if let Ok(mut m) = self.counts.lock() {
            *m.entry((node.to_owned(), method, status)).or_default() += 1;
        }
    }

    /// A copy of all counts.
    pub(crate) fn snapshot(&self) -> BTreeMap<(String, &'static str, u16), u64> {
        self.counts.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn fenced(&self) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
    }

    fn mutation_sent(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_mutation_ms.store(now, Ordering::Relaxed);
    }

    /// Counts a followed stream until the count is dropped.
    pub(crate) fn stream(self: &Arc<Self>) -> StreamCount {
        self.streams.fetch_add(1, Ordering::Relaxed);
        StreamCount(self.clone())
    }

    /// Event streams followed now.
    pub(crate) fn streams(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }

    /// Mutations the fence stopped.
    pub(crate) fn fenced_count(&self) -> u64 {
        self.fenced.load(Ordering::Relaxed)
    }

    /// When the last mutation was sent, in milliseconds since the epoch (0: never).
    pub(crate) fn last_mutation_ms(&self) -> u64 {
        self.last_mutation_ms.load(Ordering::Relaxed)
    }

    /// Calls that may change something (anything but GET/HEAD).
    pub(crate) fn mutating(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, m, _), _)| *m != "GET" && *m != "HEAD")
            .map(|(_, n)| n)
            .sum()
    }

    pub(crate) fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// What every call of a cluster passes: it is counted, and a mutation is
/// sent only while the fence (this replica's leadership) is open.
#[derive(Debug, Clone)]
pub(crate) struct CallGate {
    pub(crate) log: Arc<CallLog>,
    pub(crate) fence: Fence,
}

impl Default for CallGate {
    fn default() -> Self {
        Self {
            log: Arc::new(CallLog::default()),
            fence: Fence::open(),
        }
    }
}

/// Where an engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// A unix socket, e.g. `/var/run/docker.sock`.
    Unix(PathBuf),
    /// `http(s)://host:port` plus an optional path prefix (DCE's node proxy).
    Http(String),
}

impl Address {
    /// Parses Docker's own notation: `unix:///path`, `tcp://h:p` (http, or
    /// https when TLS material is given), `http://`, `https://`.
    pub(crate) fn parse(url: &str, tls: bool) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("unix://") {
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("tcp://") {
            let scheme = if tls { "https" } else { "http" };
            let http = format!("{scheme}://{}", rest.trim_end_matches('/'));
            no_userinfo(&http)?;
            return Ok(Address::Http(http));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            no_userinfo(url)?;
            return Ok(Address::Http(url.trim_end_matches('/').to_owned()));
        }
        Err(format!(
            "{url:?}: expected unix://, tcp://, http:// or https://"
        ))
    }
}

/// A URL must not carry credentials (`user:pass@host`): they belong in a
/// Secret or the login file, never in a spec, a flag or a log line. The
/// error does not repeat the URL.
fn no_userinfo(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "credentials in a URL (user:password@host) are refused: give them as a Secret or with mvconf login"
                .into(),
        );
    }
    Ok(())
}

/// Builds reqwest clients; one per unix socket, one shared by TCP engines
/// with the same TLS settings.
pub(crate) fn build_client(
    socket: Option<&PathBuf>,
    tls: &Tls,
    limits: &Limits,
) -> Result<reqwest::Client, String> {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Fails only if another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut b = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .pool_max_idle_per_host(limits.in_flight)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_keepalive(Duration::from_secs(30))
        .no_proxy()
        // A redirect could lead the credentials elsewhere: never followed.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mvconf/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = socket {
        b = b.unix_socket(path.clone());
    }
    if let Some(ca) = &tls.ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(ca).map_err(|e| format!("CA bundle: {e}"))?;
        if certs.is_empty() {
            return Err("CA bundle holds no certificate".into());
        }
        b = b.tls_certs_only(certs);
    }
    if let Some(id) = &tls.identity_pem {
        let identity = reqwest::Identity::from_pem(&id.0).map_err(|_| {
            "client certificate/key: not a valid PEM certificate and key".to_owned()
        })?;
        b = b.identity(identity);
    }
    if tls.insecure_skip_verify {
        tracing::warn!(
            "TLS certificate verification is disabled for this endpoint (insecureSkipTlsVerify): anyone on the path can impersonate it"
        );
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| format!("cannot build HTTP client: {}", e.without_url()))
}

/// How an engine's requests go out: the HTTP client (its connection pool)
/// and the cluster's request slots ([`Limits`]' `in_flight`).
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    pub(crate) client: reqwest::Client,
    pub(crate) slots: Arc<Semaphore>,
}

/// One engine endpoint.
#[derive(Debug)]
pub struct Transport {
    pub(crate) label: String,
    client: reqwest::Client,
    base: String,
    auth: Option<(HeaderName, HeaderValue)>,
    limits: Limits,
    pinned: Option<String>,
    version: OnceCell<String>,
    gate: CallGate,
    /// [`Limits::in_flight`], shared by every engine of the cluster.
    slots: Arc<Semaphore>,
}

/// An answer with its status.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: bytes::Bytes,
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Engines answer errors as `{"message": "..."}`; proxies answer HTML.
/// Returns the message and whether it was the engine's own. Whatever a
/// server answers ends up in status and Events, so only a short, printable
/// message is kept: the engine's own, or an HTML page's title; never the
/// body of some other server.
fn error_message(body: &[u8]) -> (String, bool) {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    if let Ok(m) = serde_json::from_slice::<Msg>(body) {
        return (printable(&m.message, 300), true);
    }
    let text = String::from_utf8_lossy(body);
    let title = text
        .find("<title>")
        .and_then(|a| {
            let rest = &text[a + 7..];
            rest.find("</title>").map(|b| &rest[..b])
        })
        .map(|t| printable(t, 80))
        .filter(|t| !t.is_empty());
    let what = match title {
        Some(t) => format!("an answer that is not the engine's: {t:?}"),
        None => format!("an answer that is not the engine's ({} bytes)", body.len()),
    };
    (what, false)
}

/// `s` on one line, without control characters, at most `max` characters.
fn printable(s: &str, max: usize) -> String {
    let clean: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if clean.chars().count() > max {
        let mut short: String = clean.chars().take(max).collect();
        short.push('…');
        short
    } else {
        clean
    }
}

/// Percent-encodes one path segment (names and IDs we put in paths).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Transport {
    pub(crate) fn new(
        label: impl Into<String>,
        connections: Connections,
        address: &Address,
        auth: &Auth,
        limits: Limits,
        pinned_version: Option<String>,
        gate: CallGate,
    ) -> Result<Self, String> {
        let Connections { client, slots } = connections;
        let base = match address {
            Address::Unix(_) => "http://localhost".to_owned(),
            Address::Http(b) => b.clone(),
        };
        Ok(Self {
            label: label.into(),
            client,
            base,
            auth: auth.header()?,
            limits,
            pinned: pinned_version,
            version: OnceCell::new(),
            gate,
            slots,
        })
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The answer's body, at most `limits.max_body` bytes: a bigger one (a
    /// hostile or broken server's, or an endless one) is an error as soon
    /// as it passes the limit, never held whole in memory.
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        request: &str,
        status: u16,
    ) -> Result<bytes::Bytes, EngineError> {
        let limit = self.limits.max_body;
        let too_large = || {
            self.err(
                ErrorKind::Decode,
                request,
                Some(status),
                format!("the answer is larger than {} MiB; not read", limit >> 20),
            )
        };
        if resp
            .content_length()
            .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(too_large());
        }
        let mut body = bytes::BytesMut::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body.freeze()),
                Err(e) => {
                    let kind = if e.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Unreachable
                    };
                    return Err(self.err(
                        kind,
                        request,
                        Some(status),
                        format!("reading the answer: {}", transport_reason(&e)),
                    ));
                }
            }
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn err(
        &self,
        kind: ErrorKind,
        request: &str,
        status: Option<u16>,
        message: impl Into<String>,
    ) -> EngineError {
        EngineError::new(kind, &self.label, request, status, message)
    }

    /// The API version used in paths: the engine's own (or the pinned one),
    /// checked against the oldest we support. Asked once per engine.
    pub(crate) async fn api_version(&self) -> Result<&str, EngineError> {
        self.version
            .get_or_try_init(|| async {
                let a = self.send_path(Method::GET, "/version", "/version", None, &[], None).await?;
                let v: super::models::Version = self.decode("GET /version", &a)?;
                let server = parse_version(&v.api_version)
                    .ok_or_else(|| self.err(ErrorKind::Unsupported, "GET /version", None, format!("unreadable API version {:?}", v.api_version)))?;
                let chosen = match &self.pinned {
                    None => v.api_version.clone(),
                    Some(p) => {
                        let want = parse_version(p).ok_or_else(|| self.err(ErrorKind::Unsupported, "GET /version", None, format!("pinned API version {p:?} is not N.M")))?;
                        if want > server {
                            return Err(self.err(ErrorKind::Unsupported, "GET /version", None, format!("pinned API version {p} is newer than the engine's {}", v.api_version)));
                        }
                        p.clone()
                    }
                };
                if parse_version(&chosen).is_none_or(|c| c < MIN_API_VERSION) {
                    return Err(self.err(
                        ErrorKind::Unsupported,
                        "GET /version",
                        None,
                        format!("engine {} speaks API {}; mvconf needs 1.30 (Engine 17.06) or newer", v.version, v.api_version),
                    ));
                }
                tracing::debug!(node = %self.label, engine = %v.version, api = %chosen, "negotiated API version");
                Ok(chosen)
            })
            .await
            .map(String::as_str)
    }

    /// One request, with retries for idempotent reads. `versioned` adds the
    /// `/vX.Y` prefix; `query` values are encoded here.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        query: &[(&str, String)],
        timeout: Option<Duration>,
        unversioned: bool,
    ) -> Result<Answer, EngineError> {
        let full_path = if unversioned {
            path.to_owned()
        } else {
            format!("/v{}{path}", self.api_version().await?)
        };
        self.send_path(method, path, &full_path, body, query, timeout)
            .await
    }

    async fn send_path(
        &self,
        method: Method,
        path: &str,
        full_path: &str,
        body: Option<Vec<u8>>,
        query: &[(&str, String)],
        timeout: Option<Duration>,
    ) -> Result<Answer, EngineError> {
        let request = format!("{method} {path}");
        let mut url = Url::parse(&format!("{}{full_path}", self.base))
            .map_err(|e| self.err(ErrorKind::Engine, &request, None, format!("bad URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let retries = if method == Method::GET {
            self.limits.read_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let result = self
                .once(&method, &url, body.clone(), timeout, &request)
                .await;
            match result {
                Err(e) if e.kind.is_transient() && attempt < retries => {
                    tracing::debug!(node = %self.label, %request, attempt, error = %e, "retrying read");
                    tokio::time::sleep(retry::ENGINE_READ.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
        request: &str,
    ) -> Result<Answer, EngineError> {
        let mut rb = self.client.request(method.clone(), url.clone());
        if let Some((name, value)) = &self.auth {
            rb = rb.header(name, value);
        }
        if let Some(b) = body {
            // Engine 17.06 refuses JSON bodies without this header.
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        if let Some(t) = timeout.or(Some(self.limits.request_timeout)) {
            rb = rb.timeout(t);
        }
        let method_name = static_method(method);
        // Held until the answer is read. Never closed, so always granted.
        let _slot = self.slots.acquire().await.ok();
        if is_mutation(method) {
            // Immediately before the call: a replica that stopped leading
            // never sends it.
            if let Err(f) = self.gate.fence.check() {
                self.gate.log.fenced();
                return Err(self.err(ErrorKind::Fenced, request, None, f.to_string()));
            }
            self.gate.log.mutation_sent();
        }
        let started = Instant::now();
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                self.gate.log.record(&self.label, method_name, 0);
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Unreachable
                };
                let reason = transport_reason(&e);
                tracing::debug!(node = %self.label, %request, error = %reason, "no answer");
                return Err(self.err(kind, request, None, reason));
            }
        };
        let status = resp.status().as_u16();
        let body = self.read_body(resp, request, status).await?;
        self.gate.log.record(&self.label, method_name, status);
        tracing::debug!(node = %self.label, %request, status, ms = started.elapsed().as_millis() as u64, "docker api");
        if (200..300).contains(&status) || status == 304 {
            return Ok(Answer { status, body });
        }
        if (300..400).contains(&status) {
            return Err(self.err(
                ErrorKind::Unreachable,
                request,
                Some(status),
                "the server answered with a redirect, which mvconf never follows: give the final URL",
            ));
        }
        let (message, from_engine) = error_message(&body);
        Err(self.err(
            classify(status, &message, from_engine),
            request,
            Some(status),
            message,
        ))
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        request: &str,
        a: &Answer,
    ) -> Result<T, EngineError> {
        serde_json::from_slice(&a.body)
            .map_err(|e| self.err(ErrorKind::Decode, request, Some(a.status), e.to_string()))
    }

    /// Opens a long-lived streaming GET (the events stream): no overall
    /// timeout, no retries; the caller reconnects.
    pub(crate) async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, EngineError> {
        let request = format!("GET {path}");
        let full = format!("{}/v{}{path}", self.base, self.api_version().await?);
        let mut url = Url::parse(&full)
            .map_err(|e| self.err(ErrorKind::Engine, &request, None, format!("bad URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut rb = self.client.get(url);
        if let Some((name, value)) = &self.auth {
            rb = rb.header(name, value);
        }
        let resp = rb.send().await.map_err(|e| {
            self.gate.log.record(&self.label, "GET", 0);
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unreachable
            };
            self.err(kind, &request, None, transport_reason(&e))
        })?;
        let status = resp.status().as_u16();
        self.gate.log.record(&self.label, "GET", status);
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = self
            .read_body(resp, &request, status)
            .await
            .unwrap_or_default();
        let (message, from_engine) = error_message(&body);
        Err(self.err(
            classify(status, &message, from_engine),
            &request,
            Some(status),
            message,
        ))
    }
}

/// Anything but a read may change the swarm.
fn is_mutation(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD)
}

fn static_method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// A transport failure in words, without the URL (it may be long, and a
/// caller's URL is its business) and without any header.
fn transport_reason(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let detail = parts
        .last()
        .cloned()
        .unwrap_or_else(|| e.without_url_ref().to_string());
    if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        format!("cannot connect: {detail}")
    } else {
        detail
    }
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let s = self.to_string();
        match self.url() {
            Some(u) => s.replace(u.as_str(), "<url>"),
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_host_notations() {
        assert_eq!(
            Address::parse("unix:///var/run/docker.sock", false),
            Ok(Address::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            Address::parse("tcp://10.0.0.1:2375", false),
            Ok(Address::Http("http://10.0.0.1:2375".into()))
        );
        assert_eq!(
            Address::parse("tcp://10.0.0.1:2376/", true),
            Ok(Address::Http("https://10.0.0.1:2376".into()))
        );
        assert_eq!(
            Address::parse("https://dce.example/", false),
            Ok(Address::Http("https://dce.example".into()))
        );
        assert!(Address::parse("ftp://x", false).is_err());
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(parse_version("1.9").unwrap() < parse_version("1.30").unwrap());
        assert!(parse_version("1.41").unwrap() >= MIN_API_VERSION);
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("macvlan"), "macvlan");
        assert_eq!(segment("10.0.0.12:12376"), "10.0.0.12:12376");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn auth_header_is_sensitive_and_never_printed() {
        let a = Auth::Basic {
            username: "admin".into(),
            password: SecretString::new("s3cret"),
        };
        let (name, value) = a.header().unwrap().unwrap();
        assert_eq!(name, reqwest::header::AUTHORIZATION);
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Basic YWRtaW46czNjcmV0");
        assert!(!format!("{a:?}").contains("s3cret"));
        assert!(!format!("{value:?}").contains("YWRtaW46czNjcmV0"));
    }

    #[test]
    fn error_messages_are_short() {
        assert_eq!(
            error_message(br#"{"message":"Address already in use"}"#),
            ("Address already in use".to_owned(), true)
        );
        let html = "<html>".repeat(200);
        let (m, from_engine) = error_message(html.as_bytes());
        assert!(m.chars().count() <= 301 && !from_engine);
    }

    // Tenancy: whatever a server a binding points at answers used to be
    // copied (300 characters of it) into status and Events.
    #[test]
    fn another_servers_answer_is_never_copied_only_a_page_title() {
        let secret_page = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon";
        let (m, from_engine) = error_message(secret_page.as_bytes());
        assert!(!from_engine);
        assert!(!m.contains("root:x"), "{m}");
        assert!(m.contains(&format!("{} bytes", secret_page.len())), "{m}");
        let page = "<html><head><title>502 Bad\r\n  Gateway\u{7}</title></head><body>internal</body></html>";
        let (m, _) = error_message(page.as_bytes());
        assert!(
            m.contains("\"502 Bad Gateway\"") && !m.contains("internal"),
            "{m}"
        );
        let long = format!(r#"{{"message":"{}\u0000end"}}"#, "x".repeat(400));
        let (m, from_engine) = error_message(long.as_bytes());
        assert!(
            from_engine && m.chars().count() == 301 && !m.contains('\0'),
            "{m}"
        );
    }

    #[test]
    fn urls_with_credentials_are_refused_without_repeating_them() {
        for url in [
            "https://admin:s3cret@dce.example.com",
            "http://admin@10.0.0.1:2375",
            "tcp://admin:s3cret@10.0.0.1:2375",
        ] {
            let e = Address::parse(url, false).unwrap_err();
            assert!(e.contains("credentials in a URL"), "{e}");
            assert!(!e.contains("s3cret") && !e.contains("admin"), "{e}");
        }
        assert!(Address::parse("https://dce.example.com:443/", false).is_ok());
    }
}
