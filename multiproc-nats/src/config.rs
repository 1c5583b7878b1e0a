//! Where the broker is, how to log in, and how the task queue is laid out.
//!
//! Secrets (a password, a token, an nkey seed) are kept in [`Secret`], which never prints
//! itself: `Debug` and `Display` of every type here, and every error, show `***` instead.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable a worker (and, by default, a client) reads the broker's
/// address from: a URL as [`BrokerConfig::parse`] takes it.
pub const URL_ENV: &str = "MULTIPROC_NATS_URL";

/// The environment variable naming the pool (the task queue) to serve or submit to.
pub const POOL_ENV: &str = "MULTIPROC_NATS_POOL";

/// The environment variable giving the number of replicas of the pool's streams (see
/// [`QueueConfig::replicas`]).
pub const REPLICAS_ENV: &str = "MULTIPROC_NATS_REPLICAS";

/// The environment variable giving the queue's ack wait in seconds (see
/// [`QueueConfig::ack_wait`]).
pub const ACK_WAIT_ENV: &str = "MULTIPROC_NATS_ACK_WAIT";

/// The environment variable giving the queue's most deliveries of a task (see
/// [`QueueConfig::max_deliver`]).
pub const MAX_DELIVER_ENV: &str = "MULTIPROC_NATS_MAX_DELIVER";

/// The environment variable giving the queue's client lease in seconds (see
/// [`QueueConfig::client_lease`]).
pub const CLIENT_LEASE_ENV: &str = "MULTIPROC_NATS_CLIENT_LEASE";

/// The environment variable giving the most tasks handed out and not yet acked (see
/// [`QueueConfig::max_ack_pending`]).
pub const MAX_ACK_PENDING_ENV: &str = "MULTIPROC_NATS_MAX_ACK_PENDING";

/// The environment variable giving how long a stored result waits for its client, in
/// seconds (see [`QueueConfig::result_ttl`]).
pub const RESULT_TTL_ENV: &str = "MULTIPROC_NATS_RESULT_TTL";

/// The most replicas JetStream keeps of a stream.
pub const MAX_REPLICAS: usize = 5;

/// The broker address used when [`URL_ENV`] is not set.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// A secret string — a password, a token, an nkey seed. It prints as `***`.
///
/// ```
/// use multiproc_nats::Secret;
///
/// let s = Secret::new("hunter2");
/// assert_eq!(s.to_string(), "***");
/// assert_eq!(format!("{s:?}"), "***");
/// assert_eq!(s.expose(), "hunter2"); // only when asked for by name
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    ///
    /// ```
    /// let s = multiproc_nats::Secret::new("pw");
    /// assert_eq!(s.to_string(), "***");
    /// ```
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, for handing to the connection; never print it.
    ///
    /// ```
    /// let s = multiproc_nats::Secret::new("pw");
    /// assert_eq!(s.expose(), "pw");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to log in to the broker.
///
/// ```
/// use multiproc_nats::{Auth, BrokerConfig};
///
/// let b = BrokerConfig::parse("nats://s3cret-token@broker.example")?;
/// assert!(matches!(b.auth(), Auth::Token(t) if t.expose() == "s3cret-token"));
/// let b = BrokerConfig::parse("nats://broker.example")?.user_password("app", "pw");
/// match b.auth() {
///     Auth::UserPassword { user, .. } => assert_eq!(user, "app"),
///     other => panic!("expected a user and password, got {other:?}"),
/// }
/// # Ok::<(), multiproc_nats::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A user name and a password (`nats://user:password@host`).
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A token (`nats://token@host`).
    Token(Secret),
    /// An nkey seed (`?nkey=SU...`, or `?nkey_file=PATH` to read it from a file).
    NKey(Secret),
    /// A credentials file (JWT and seed) (`?creds=PATH`).
    CredentialsFile(PathBuf),
}

/// TLS options.
///
/// ```
/// use multiproc_nats::BrokerConfig;
/// use std::path::Path;
///
/// let b = BrokerConfig::parse("tls://broker.example:4222?tls_ca=/etc/nats/ca.pem")?;
/// assert!(b.tls().required);
/// assert_eq!(b.tls().root_certificates.as_deref(), Some(Path::new("/etc/nats/ca.pem")));
/// assert_eq!(b.tls().client_certificate, None);
/// # Ok::<(), multiproc_nats::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    /// Refuse a connection without TLS (`tls://` or `?tls=required`).
    pub required: bool,
    /// A PEM file of root certificates to trust (`?tls_ca=PATH`).
    pub root_certificates: Option<PathBuf>,
    /// A client certificate and its key, PEM files (`?tls_cert=PATH&tls_key=PATH`).
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// Where the broker is and how to reach it: servers, credentials, TLS.
///
/// Made from a URL — `nats://[user:password@ | token@]host[:port][,host[:port]...][?options]`,
/// or `tls://...` to require TLS — with [`parse`](BrokerConfig::parse) or
/// [`from_env`](BrokerConfig::from_env), then adjusted with the builder methods. Options:
/// `nkey=SEED`, `nkey_file=PATH`, `creds=PATH`, `tls=required`, `tls_ca=PATH`,
/// `tls_cert=PATH`, `tls_key=PATH`. Percent-escapes (`%40` for `@`) are allowed in the
/// user, password and token. A list of URLs (`nats://a:4222,nats://b:4222`, as NATS
/// tools take it) is one broker of several servers: they share one scheme and one login.
///
/// Printing it never shows a secret:
///
/// ```
/// use multiproc_nats::BrokerConfig;
///
/// let b = BrokerConfig::parse("nats://alice:s3cret@broker.example:4222").unwrap();
/// assert_eq!(b.to_string(), "nats://alice:***@broker.example:4222");
/// assert!(!format!("{b:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    servers: Vec<(String, u16)>,
    auth: Auth,
    tls: Tls,
}

/// A broker configuration that could not be understood. Its message never contains a
/// secret, even when the secret is what was wrong.
///
/// ```
/// use multiproc_nats::BrokerConfig;
///
/// let e = BrokerConfig::parse("nats://app:s3cret@broker.example?bogus=1").unwrap_err();
/// assert!(e.to_string().contains("unknown option `bogus`"), "{e}");
/// let e = BrokerConfig::parse("nats://app:s3cret%zz@broker.example").unwrap_err();
/// assert!(!e.to_string().contains("s3cret"), "{e}"); // the secret is never shown
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad broker configuration: {reason}")]
pub struct ConfigError {
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(reason: impl Into<String>) -> ConfigError {
        ConfigError { reason: reason.into() }
    }
}

// Why not the `url` and `percent-encoding` crates (both in the tree through async-nats):
// a NATS URL is not a WHATWG URL. `url` refuses several hosts in one URL
// (`nats://h1:4333,h2`: "invalid port number") and lists of URLs, which are the
// grammar's point here, so the splitting below would stay; and `percent_decode_str`
// passes a bad escape (`%zz`) through unchanged, where this names it as an error. What
// `url` would take over (one host with its port) is about 25 lines.
fn percent_decode(s: &str, what: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => out.push(b),
                None => return Err(ConfigError::new(format!("a bad percent-escape in the {what}"))),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConfigError::new(format!("the {what} is not UTF-8 once unescaped")))
}

impl BrokerConfig {
    /// Parses a broker URL (see the type's documentation for the form).
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// let b = BrokerConfig::parse("nats://h1:4222,h2")?;
    /// assert_eq!(b.servers(), [("h1".to_string(), 4222), ("h2".to_string(), 4222)]);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn parse(url: &str) -> Result<BrokerConfig, ConfigError> {
        let url = url.trim();
        let (addresses, query) = url.split_once('?').unwrap_or((url, ""));
        let mut first: Option<(Tls, Auth)> = None;
        let mut servers = Vec::new();
        for address in split_urls(addresses) {
            let (tls, rest) = parse_scheme(address)?;
            let rest = rest.trim_end_matches('/');
            // The user info ends at the last '@': a password may contain an unescaped '@'.
            let (userinfo, hosts) = match rest.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, rest),
            };
            let auth = parse_userinfo(userinfo)?;
            for host in hosts.split(',') {
                servers.push(parse_host(host)?);
            }
            first = Some(match first {
                None => (tls, auth),
                Some(seen) => same_everywhere(seen, tls, auth)?,
            });
        }
        let (mut tls, auth) = first.unwrap_or_default();
        let mut options = UrlOptions { auth, cert: None, key: None };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            options.set(k, v, &mut tls)?;
        }
        tls.client_certificate = options.client_certificate()?;
        Ok(BrokerConfig { servers, auth: options.auth, tls })
    }

    /// The broker named by the `MULTIPROC_NATS_URL` environment variable, or
    /// `nats://127.0.0.1:4222` when it is not set.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// // MULTIPROC_NATS_URL, or nats://127.0.0.1:4222 when unset
    /// let b = BrokerConfig::from_env()?;
    /// assert!(!b.servers().is_empty());
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<BrokerConfig, ConfigError> {
        match std::env::var(URL_ENV) {
            Ok(url) => BrokerConfig::parse(&url).map_err(|e| ConfigError::new(format!("{URL_ENV}: {}", e.reason))),
            Err(std::env::VarError::NotPresent) => BrokerConfig::parse(DEFAULT_URL),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::new(format!("{URL_ENV} is not UTF-8"))),
        }
    }

    /// Logs in with a user name and password.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// let b = BrokerConfig::parse("nats://h")?.user_password("app", "s3cret");
    /// assert_eq!(b.to_string(), "nats://app:***@h:4222");
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> BrokerConfig {
        self.auth = Auth::UserPassword { user: user.into(), password: Secret(password.into()) };
        self
    }

    /// Logs in with a token.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// let b = BrokerConfig::parse("nats://h")?.token("t0ken");
    /// assert!(!b.to_string().contains("t0ken"));
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> BrokerConfig {
        self.auth = Auth::Token(Secret(token.into()));
        self
    }

    /// Logs in with an nkey seed.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// let b = BrokerConfig::parse("nats://h")?.nkey("SUAEXAMPLESEED");
    /// assert!(!format!("{b:?}").contains("SUAEXAMPLESEED"));
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn nkey(mut self, seed: impl Into<String>) -> BrokerConfig {
        self.auth = Auth::NKey(Secret(seed.into()));
        self
    }

    /// Logs in with a credentials file (JWT and nkey seed).
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// use multiproc_nats::Auth;
    /// let b = BrokerConfig::parse("nats://h")?.credentials_file("/etc/nats/app.creds");
    /// assert!(matches!(b.auth(), Auth::CredentialsFile(_)));
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> BrokerConfig {
        self.auth = Auth::CredentialsFile(path.into());
        self
    }

    /// Requires TLS.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// let b = BrokerConfig::parse("nats://h")?.require_tls(true);
    /// assert!(b.tls().required);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn require_tls(mut self, required: bool) -> BrokerConfig {
        self.tls.required = required;
        self
    }

    /// Trusts the root certificates in this PEM file.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// let b = BrokerConfig::parse("nats://h")?.tls_root_certificates("/etc/nats/ca.pem");
    /// assert!(b.tls().root_certificates.is_some());
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn tls_root_certificates(mut self, path: impl Into<PathBuf>) -> BrokerConfig {
        self.tls.root_certificates = Some(path.into());
        self
    }

    /// Presents this client certificate (PEM files of the certificate and its key).
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// let b = BrokerConfig::parse("nats://h")?.tls_client_certificate("client.pem", "client.key");
    /// assert!(b.tls().client_certificate.is_some());
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn tls_client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> BrokerConfig {
        self.tls.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// The servers, as `(host, port)`.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// let b = BrokerConfig::parse("nats://[::1]:4333")?;
    /// assert_eq!(b.servers(), [("::1".to_string(), 4333)]);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn servers(&self) -> &[(String, u16)] {
        &self.servers
    }

    /// The credentials.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// use multiproc_nats::Auth;
    /// assert_eq!(BrokerConfig::parse("nats://h")?.auth(), &Auth::None);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The TLS options.
    ///
    /// ```
    /// use multiproc_nats::BrokerConfig;
    ///
    /// assert!(!BrokerConfig::parse("nats://h")?.tls().required);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn tls(&self) -> &Tls {
        &self.tls
    }
}

/// The scheme (`nats://`, `tls://`, or none: `nats`) and what follows it.
fn parse_scheme(url: &str) -> Result<(Tls, &str), ConfigError> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("nats".to_string(), url),
    };
    let mut tls = Tls::default();
    match scheme.as_str() {
        "nats" => {}
        "tls" => tls.required = true,
        other => return Err(ConfigError::new(format!("unknown scheme `{other}` (use nats:// or tls://)"))),
    }
    Ok((tls, rest))
}

/// The URLs of a list (`nats://a:4222,nats://b:4222`): split at each comma that starts
/// another URL (a comma between hosts of one URL, `nats://a,b`, stays).
fn split_urls(s: &str) -> Vec<&str> {
    let starts_url = |rest: &str| {
        rest.split_once("://")
            .is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()))
    };
    let mut urls = Vec::new();
    let mut start = 0;
    for (i, _) in s.match_indices(',') {
        if starts_url(&s[i + 1..]) {
            urls.push(&s[start..i]);
            start = i + 1;
        }
    }
    urls.push(&s[start..]);
    urls
}

/// The URLs of a list must agree on TLS and on credentials (given once, or the same
/// each time).
fn same_everywhere(seen: (Tls, Auth), tls: Tls, auth: Auth) -> Result<(Tls, Auth), ConfigError> {
    if seen.0.required != tls.required {
        return Err(ConfigError::new("the URLs of the list mix nats:// and tls://: use one scheme"));
    }
    match (seen.1, auth) {
        (seen, Auth::None) => Ok((tls, seen)),
        (Auth::None, auth) => Ok((tls, auth)),
        (seen, auth) if seen == auth => Ok((tls, seen)),
        _ => Err(ConfigError::new("the URLs of the list give different credentials: one login serves every server")),
    }
}

/// `user:password` or `token`, percent-escapes allowed.
fn parse_userinfo(userinfo: Option<&str>) -> Result<Auth, ConfigError> {
    Ok(match userinfo {
        None => Auth::None,
        Some(u) => match u.split_once(':') {
            Some((user, password)) => Auth::UserPassword {
                user: percent_decode(user, "user name")?,
                password: Secret(percent_decode(password, "password")?),
            },
            None => Auth::Token(Secret(percent_decode(u, "token")?)),
        },
    })
}

/// What the options of a URL (after `?`) set besides TLS: credentials, and the two halves
/// of a client certificate.
struct UrlOptions {
    auth: Auth,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl UrlOptions {
    /// Applies option `k=v`.
    fn set(&mut self, k: &str, v: &str, tls: &mut Tls) -> Result<(), ConfigError> {
        match k {
            "nkey" => self.set_auth(k, Auth::NKey(Secret(percent_decode(v, "nkey seed")?)))?,
            "nkey_file" => {
                let seed = std::fs::read_to_string(v)
                    .map_err(|e| ConfigError::new(format!("cannot read the nkey file `{v}`: {e}")))?;
                self.set_auth(k, Auth::NKey(Secret(seed.trim().to_string())))?
            }
            "creds" => self.set_auth(k, Auth::CredentialsFile(PathBuf::from(v)))?,
            "tls" => match v {
                "required" | "true" | "1" => tls.required = true,
                "" | "false" | "0" => {}
                other => return Err(ConfigError::new(format!("tls={other}: use tls=required"))),
            },
            "tls_ca" => tls.root_certificates = Some(PathBuf::from(v)),
            "tls_cert" => self.cert = Some(PathBuf::from(v)),
            "tls_key" => self.key = Some(PathBuf::from(v)),
            other => {
                return Err(ConfigError::new(format!(
                    "unknown option `{other}` (known: nkey, nkey_file, creds, tls, tls_ca, tls_cert, tls_key)"
                )));
            }
        }
        Ok(())
    }

    /// Credentials from option `k`: only when the URL gave none before.
    fn set_auth(&mut self, k: &str, auth: Auth) -> Result<(), ConfigError> {
        if self.auth != Auth::None {
            return Err(ConfigError::new(format!("`{k}` given together with other credentials")));
        }
        self.auth = auth;
        Ok(())
    }

    /// `tls_cert` and `tls_key`, both or neither.
    fn client_certificate(&mut self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        match (self.cert.take(), self.key.take()) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            _ => Err(ConfigError::new("tls_cert and tls_key go together")),
        }
    }
}

fn parse_host(host: &str) -> Result<(String, u16), ConfigError> {
    if host.is_empty() {
        return Err(ConfigError::new("no host"));
    }
    // `[::1]:4222`, `host:4222`, `host`.
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) =
            rest.split_once(']').ok_or_else(|| ConfigError::new(format!("unclosed `[` in host `{host}`")))?;
        (name, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if name.is_empty() || name.contains(['/', ' ', '@']) {
        return Err(ConfigError::new(format!("bad host `{name}`")));
    }
    let port = match port {
        None => 4222,
        Some(p) => p.parse().map_err(|_| ConfigError::new(format!("port `{p}` of host `{name}` is not a number")))?,
    };
    Ok((name.to_string(), port))
}

impl fmt::Display for BrokerConfig {
    /// The URL with every secret replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls.required { "tls://" } else { "nats://" })?;
        match &self.auth {
            Auth::UserPassword { user, .. } => write!(f, "{user}:***@")?,
            Auth::Token(_) => f.write_str("***@")?,
            _ => {}
        }
        for (i, (host, port)) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if host.contains(':') {
                write!(f, "[{host}]:{port}")?;
            } else {
                write!(f, "{host}:{port}")?;
            }
        }
        let mut query = Vec::new();
        match &self.auth {
            Auth::NKey(_) => query.push("nkey=***".to_string()),
            Auth::CredentialsFile(p) => query.push(format!("creds={}", p.display())),
            _ => {}
        }
        if let Some(ca) = &self.tls.root_certificates {
            query.push(format!("tls_ca={}", ca.display()));
        }
        if let Some((c, k)) = &self.tls.client_certificate {
            query.push(format!("tls_cert={}&tls_key={}", c.display(), k.display()));
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("servers", &self.servers)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .finish()
    }
}

/// How the task queue is laid out on the broker: one JetStream work-queue stream per
/// pool, and one durable pull consumer per build that the build's workers share.
///
/// Whoever connects first (a client or a worker) creates the stream and the consumer
/// with these settings; later ones use what exists. A later one that *sets* a setting
/// (with a method here or from the environment) to another value than the queue has
/// fails to connect, naming both values: a setting is never silently ignored. One that
/// leaves it at its default takes what the queue has.
///
/// ```
/// use multiproc_nats::QueueConfig;
/// use std::time::Duration;
///
/// let q = QueueConfig::default()
///     .pool("render")?
///     .replicas(3)?
///     .ack_wait(Duration::from_secs(60))
///     .max_deliver(3);
/// assert_eq!(q.pool_name(), "render");
/// assert!(QueueConfig::default().replicas(9).is_err()); // 1 to 5
/// # Ok::<(), multiproc_nats::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub(crate) pool: String,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: i64,
    pub(crate) max_ack_pending: i64,
    pub(crate) duplicate_window: Duration,
    pub(crate) replicas: usize,
    pub(crate) client_lease: Duration,
    pub(crate) result_ttl: Duration,
    /// Which settings were given rather than left at their defaults.
    pub(crate) given: Given,
}

/// Which queue settings were given: those must match an existing queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Given {
    pub(crate) ack_wait: bool,
    pub(crate) max_deliver: bool,
    pub(crate) max_ack_pending: bool,
    pub(crate) replicas: bool,
    pub(crate) client_lease: bool,
    pub(crate) result_ttl: bool,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            pool: "default".to_string(),
            ack_wait: Duration::from_secs(10),
            max_deliver: 5,
            max_ack_pending: 20_000,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            client_lease: Duration::from_secs(60),
            result_ttl: Duration::from_secs(3600),
            given: Given::default(),
        }
    }
}

impl QueueConfig {
    /// The pool named by `MULTIPROC_NATS_POOL` (or `default`), with the settings the
    /// environment gives (`MULTIPROC_NATS_REPLICAS`, `MULTIPROC_NATS_ACK_WAIT` in seconds,
    /// `MULTIPROC_NATS_MAX_DELIVER`, `MULTIPROC_NATS_MAX_ACK_PENDING`,
    /// `MULTIPROC_NATS_CLIENT_LEASE` and `MULTIPROC_NATS_RESULT_TTL` in seconds) and
    /// defaults otherwise. A setting from the environment counts as given: one that
    /// differs from the existing queue's is an error.
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// let q = QueueConfig::from_env()?; // MULTIPROC_NATS_POOL, _REPLICAS, _ACK_WAIT, ...
    /// assert!(!q.pool_name().is_empty());
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<QueueConfig, ConfigError> {
        QueueConfig::from_lookup(|var| std::env::var(var).ok())
    }

    /// [`from_env`](QueueConfig::from_env), reading variables with `var`.
    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<QueueConfig, ConfigError> {
        let mut q = QueueConfig::default();
        if let Some(name) = var(POOL_ENV) {
            q = q.pool(name)?;
        }
        if let Some(n) = var(REPLICAS_ENV) {
            q = q.replicas(parse_number(REPLICAS_ENV, &n)?)?;
        }
        if let Some(s) = var(ACK_WAIT_ENV) {
            q = q.ack_wait(parse_seconds(ACK_WAIT_ENV, &s)?);
        }
        if let Some(n) = var(MAX_DELIVER_ENV) {
            q = q.max_deliver(parse_number(MAX_DELIVER_ENV, &n)?);
        }
        if let Some(n) = var(MAX_ACK_PENDING_ENV) {
            q = q.max_ack_pending(parse_number(MAX_ACK_PENDING_ENV, &n)?);
        }
        if let Some(s) = var(CLIENT_LEASE_ENV) {
            q = q.client_lease(parse_seconds(CLIENT_LEASE_ENV, &s)?);
        }
        if let Some(s) = var(RESULT_TTL_ENV) {
            q = q.result_ttl(parse_seconds(RESULT_TTL_ENV, &s)?);
        }
        Ok(q)
    }

    /// How many servers of a JetStream cluster keep a copy of the pool's streams (its
    /// task queue, results, leases): with 3, the pool survives the loss of any one server
    /// (the cluster elects a new leader in seconds and clients and workers carry on); with
    /// 1, losing the server that holds it stops the pool until it is back. 1 to 5
    /// (JetStream's limit), at most the number of servers in the cluster. Left out, it is
    /// what the cluster offers, up to 3 (1 on a single server). Like every queue setting,
    /// it applies when the queue is created.
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// let q = QueueConfig::default().replicas(3)?; // survives the loss of one server
    /// # drop(q);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn replicas(mut self, n: usize) -> Result<QueueConfig, ConfigError> {
        if !(1..=MAX_REPLICAS).contains(&n) {
            return Err(ConfigError::new(format!(
                "replicas {n}: a stream has 1 to {MAX_REPLICAS} replicas (at most the servers in the cluster)"
            )));
        }
        self.replicas = n;
        self.given.replicas = true;
        Ok(self)
    }

    /// The pool's name: letters, digits, `-` and `_` (default `default`). Clients and
    /// workers of one pool share its queue.
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// assert_eq!(QueueConfig::default().pool("render")?.pool_name(), "render");
    /// assert!(QueueConfig::default().pool("no spaces").is_err());
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn pool(mut self, name: impl Into<String>) -> Result<QueueConfig, ConfigError> {
        let name = name.into();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError::new(format!("pool name `{name}`: use letters, digits, `-` and `_`")));
        }
        self.pool = name;
        Ok(self)
    }

    /// How long the broker waits for a worker's ack (or in-progress ack) before it hands
    /// the task to another worker (default 10 s). Workers send in-progress acks every
    /// third of it while a task runs, so only a worker that vanished loses its tasks.
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// let q = QueueConfig::default().ack_wait(Duration::from_secs(120));
    /// # drop(q);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn ack_wait(mut self, d: Duration) -> QueueConfig {
        self.ack_wait = d.max(Duration::from_millis(100));
        self.given.ack_wait = true;
        self
    }

    /// How many times a task is handed out at most (default 5): a task whose workers keep
    /// vanishing fails after that many tries instead of circling forever.
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// let q = QueueConfig::default().max_deliver(3);
    /// # drop(q);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn max_deliver(mut self, n: u32) -> QueueConfig {
        self.max_deliver = n.max(1) as i64;
        self.given.max_deliver = true;
        self
    }

    /// How long a client stays alive for the workers without a sign of life (default
    /// 60 s). A client renews its lease three times per lease while it is connected;
    /// a worker drops (terminates, unrun) a task whose client's lease has lapsed: a
    /// killed client's work does not run for nobody, nor hold up the work of others.
    /// A client cut off from the broker for longer than this loses its queued tasks
    /// (they fail at its [result deadline](crate::ClientConfig::result_deadline), or
    /// never come back). At least 1 s.
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// let q = QueueConfig::default().client_lease(Duration::from_secs(30));
    /// # drop(q);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn client_lease(mut self, d: Duration) -> QueueConfig {
        self.client_lease = d.max(Duration::from_secs(1));
        self.given.client_lease = true;
        self
    }

    /// How long a result stored for its client waits there at most (default 1 h): a
    /// client cut off from the broker collects the results of its tasks when it is back,
    /// as long as it is back within this time. At least 1 s. It is also how long an
    /// argument or a result too large for a message stays in the pool's object store
    /// (`MPROC_<pool>_objects`) at most: its reader deletes it, and one whose reader
    /// vanished expires then. So a task whose arguments travel there must be taken by a
    /// worker within this time; later it fails with [`RemoteError::Object`](crate::RemoteError::Object).
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// let q = QueueConfig::default().result_ttl(Duration::from_secs(6 * 3600));
    /// # drop(q);
    /// ```
    pub fn result_ttl(mut self, d: Duration) -> QueueConfig {
        self.result_ttl = d.max(Duration::from_secs(1));
        self.given.result_ttl = true;
        self
    }

    /// The stream where workers store results until their client takes them.
    pub(crate) fn result_stream(&self) -> String {
        format!("MPROC_{}_results", self.pool)
    }

    /// The subjects of every client's results: the result stream's.
    pub(crate) fn result_subjects(&self) -> String {
        self.result_subject("*")
    }

    /// The object store bucket where payloads too large for a message travel (its
    /// stream is `OBJ_` and this name).
    pub(crate) fn object_bucket(&self) -> String {
        format!("MPROC_{}_objects", self.pool)
    }

    /// The stream keeping the broker's word on lost tasks.
    pub(crate) fn lost_stream(&self) -> String {
        format!("MPROC_{}_lost", self.pool)
    }

    /// The stream where workers note which items of a running task already have their
    /// results stored, so that a redelivery runs only the others.
    pub(crate) fn progress_stream(&self) -> String {
        format!("MPROC_{}_progress", self.pool)
    }

    /// The subject of the progress of task `task_id` of client `client` (`*` and `*`
    /// for all).
    pub(crate) fn progress_subject(&self, client: &str, task_id: &str) -> String {
        format!("mproc.{}.progress.{client}.{task_id}", self.pool)
    }

    /// The durable consumer through which client `id` takes its results.
    pub(crate) fn result_consumer(&self, id: &str) -> String {
        format!("client-{id}")
    }

    /// The subject on which client `id` answers a worker asking whether it is alive.
    pub(crate) fn probe_subject(&self, id: &str) -> String {
        format!("mproc.{}.probes.{id}", self.pool)
    }

    /// The stream of the clients' leases.
    pub(crate) fn lease_stream(&self) -> String {
        format!("MPROC_{}_leases", self.pool)
    }

    /// The stream of the workers' heartbeats.
    pub(crate) fn presence_stream(&self) -> String {
        format!("MPROC_{}_workers", self.pool)
    }

    /// The subject of worker `name`'s heartbeats (`*` for all).
    pub(crate) fn presence_subject(&self, name: &str) -> String {
        format!("mproc.{}.workers.{name}", self.pool)
    }

    /// The subject of client `id`'s lease.
    pub(crate) fn lease_subject(&self, id: &str) -> String {
        format!("mproc.{}.leases.{id}", self.pool)
    }

    /// The most tasks handed out and not yet acked, over all workers (default 20 000).
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// let q = QueueConfig::default().max_ack_pending(10_000);
    /// # drop(q);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn max_ack_pending(mut self, n: u32) -> QueueConfig {
        self.max_ack_pending = n.max(1) as i64;
        self.given.max_ack_pending = true;
        self
    }

    /// The pool's name.
    ///
    /// ```
    /// use multiproc_nats::QueueConfig;
    /// use std::time::Duration;
    ///
    /// println!("pool {}", QueueConfig::default().pool_name());
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn pool_name(&self) -> &str {
        &self.pool
    }

    pub(crate) fn stream(&self) -> String {
        format!("MPROC_{}", self.pool)
    }

    /// The consumer of one build's tasks, shared by that build's workers.
    pub(crate) fn consumer(&self, build: u64) -> String {
        format!("workers-{build:016x}")
    }

    /// The subject of one build's tasks: a task travels only to workers of the build
    /// that made it.
    pub(crate) fn task_subject(&self, build: u64) -> String {
        format!("mproc.{}.tasks.{build:016x}", self.pool)
    }

    /// The subjects of every build's tasks: the stream's.
    pub(crate) fn task_subjects(&self) -> String {
        format!("mproc.{}.tasks.*", self.pool)
    }

    pub(crate) fn result_subject(&self, client: &str) -> String {
        format!("mproc.{}.results.{client}", self.pool)
    }
}

/// A whole number from environment variable `var`.
fn parse_number<T: std::str::FromStr>(var: &str, s: &str) -> Result<T, ConfigError> {
    s.trim().parse().map_err(|_| ConfigError::new(format!("{var}={s} is not a number")))
}

/// A number of bytes (`1048576`, `512MiB`, `2GiB`, `64 KiB`) from environment variable
/// `var`.
pub(crate) fn parse_bytes(var: &str, s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => Some(0),
        "KiB" => Some(10),
        "MiB" => Some(20),
        "GiB" => Some(30),
        _ => None,
    };
    number
        .parse::<u64>()
        .ok()
        .zip(shift)
        .and_then(|(n, shift)| n.checked_mul(1 << shift))
        .ok_or_else(|| ConfigError::new(format!("{var}={s} is not a number of bytes (e.g. 1048576, 512MiB, 2GiB)")))
}

/// A number of seconds (`30`, `1.5`) from environment variable `var`.
pub(crate) fn parse_seconds(var: &str, s: &str) -> Result<Duration, ConfigError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| ConfigError::new(format!("{var}={s} is not a number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_of_bytes_takes_a_binary_unit_or_is_an_error_naming_the_variable() {
        assert_eq!(parse_bytes("V", "1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("V", " 512MiB ").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("V", "2 GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("V", "64KiB").unwrap(), 64 << 10);
        for bad in ["", "MiB", "1.5GiB", "12MB", "-1", "99999999999GiB"] {
            let e = parse_bytes("V", bad).unwrap_err().to_string();
            assert!(e.contains(&format!("V={bad} is not a number of bytes")), "{e}");
        }
    }

    #[test]
    fn user_and_password_are_parsed_and_never_printed() {
        let b = BrokerConfig::parse("nats://alice:p%40ss:w0rd@h1:4333,h2").unwrap();
        assert_eq!(b.servers(), &[("h1".to_string(), 4333), ("h2".to_string(), 4222)]);
        match b.auth() {
            Auth::UserPassword { user, password } => {
                assert_eq!(user, "alice");
                assert_eq!(password.expose(), "p@ss:w0rd");
            }
            other => panic!("{other:?}"),
        }
        for shown in [b.to_string(), format!("{b:?}"), format!("{b:#?}")] {
            assert!(!shown.contains("p@ss") && !shown.contains("w0rd") && !shown.contains("p%40ss"), "{shown}");
        }
        assert_eq!(b.to_string(), "nats://alice:***@h1:4333,h2:4222");
    }

    #[test]
    fn a_token_an_nkey_and_tls_options() {
        let b = BrokerConfig::parse("tls://t0ken-value@[::1]:4222?tls_ca=/ca.pem").unwrap();
        assert_eq!(b.auth(), &Auth::Token(Secret::new("t0ken-value")));
        assert!(b.tls().required);
        assert_eq!(b.to_string(), "tls://***@[::1]:4222?tls_ca=/ca.pem");
        assert!(!format!("{b:?}").contains("t0ken"));

        let seed = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
        let b = BrokerConfig::parse(&format!("nats://h?nkey={seed}&tls=required")).unwrap();
        assert_eq!(b.auth(), &Auth::NKey(Secret::new(seed)));
        assert!(b.tls().required);
        assert!(!b.to_string().contains(seed) && !format!("{b:?}").contains(seed));
        assert_eq!(b.to_string(), "tls://h:4222?nkey=***");
    }

    #[test]
    fn errors_name_what_is_wrong_but_not_the_secret() {
        for (url, expect) in [
            ("http://h", "unknown scheme"),
            ("nats://u:secretpw@h:notaport", "not a number"),
            ("nats://u:secretpw@h?bogus=1", "unknown option"),
            ("nats://u:secretpw@h?nkey=SUSECRETSEED", "together with other credentials"),
            ("nats://u:secret%zzpw@h", "percent-escape"),
            ("nats://h?tls_cert=/c.pem", "go together"),
            ("nats://", "no host"),
        ] {
            let e = BrokerConfig::parse(url).unwrap_err().to_string();
            assert!(e.contains(expect), "{url}: {e}");
            assert!(!e.contains("secret") && !e.contains("SECRET"), "{url}: {e}");
        }
    }

    #[test]
    fn a_list_of_urls_is_one_broker_of_several_servers() {
        let b = BrokerConfig::parse("nats://a:1,nats://b:2,c").unwrap();
        assert_eq!(b.to_string(), "nats://a:1,b:2,c:4222");
        let b = BrokerConfig::parse("tls://u:pw@a:1,tls://u:pw@b:2?tls_ca=/ca.pem").unwrap();
        assert_eq!(b.to_string(), "tls://u:***@a:1,b:2?tls_ca=/ca.pem");
        let b = BrokerConfig::parse("nats://tok@a:1,nats://b:2").unwrap();
        assert_eq!(b.auth(), &Auth::Token(Secret::new("tok")));
        for (url, expect) in [
            ("nats://a:1,tls://b:2", "mix nats:// and tls://"),
            ("nats://u:secret1@a,nats://u:secret2@b", "different credentials"),
            ("nats://a:1,http://b:2", "unknown scheme `http`"),
        ] {
            let e = BrokerConfig::parse(url).unwrap_err().to_string();
            assert!(e.contains(expect), "{url}: {e}");
            assert!(!e.contains("secret"), "{url}: {e}");
        }
    }

    #[test]
    fn a_bare_address_is_a_nats_url() {
        let b = BrokerConfig::parse("127.0.0.1:5222").unwrap();
        assert_eq!(b.to_string(), "nats://127.0.0.1:5222");
        assert_eq!(b.auth(), &Auth::None);
    }

    #[test]
    fn builder_credentials_are_hidden_too() {
        let b = BrokerConfig::parse("nats://h").unwrap().user_password("bob", "hunter2");
        assert!(!format!("{b} {b:?}").contains("hunter2"));
        let b = b.token("tok-xyz");
        assert!(!format!("{b} {b:?}").contains("tok-xyz"));
    }

    #[test]
    fn pool_names_are_checked() {
        assert!(QueueConfig::default().pool("a.b").is_err());
        assert!(QueueConfig::default().pool("").is_err());
        let q = QueueConfig::default().pool("batch-7_x").unwrap();
        assert_eq!(q.stream(), "MPROC_batch-7_x");
        assert_eq!(q.task_subject(0xab), "mproc.batch-7_x.tasks.00000000000000ab");
        assert_eq!(q.task_subjects(), "mproc.batch-7_x.tasks.*");
        assert_eq!(q.consumer(0xab), "workers-00000000000000ab");
    }

    #[test]
    fn every_queue_setting_comes_from_the_environment_as_given() {
        let env = [
            (POOL_ENV, "p"),
            (REPLICAS_ENV, "3"),
            (ACK_WAIT_ENV, "2.5"),
            (MAX_DELIVER_ENV, "7"),
            (MAX_ACK_PENDING_ENV, "100"),
            (CLIENT_LEASE_ENV, "10"),
            (RESULT_TTL_ENV, "600"),
        ];
        let lookup = |var: &str| env.iter().find(|(k, _)| *k == var).map(|(_, v)| v.to_string());
        let q = QueueConfig::from_lookup(lookup).unwrap();
        assert_eq!(q.pool, "p");
        assert_eq!((q.replicas, q.max_deliver, q.max_ack_pending), (3, 7, 100));
        assert_eq!((q.ack_wait, q.client_lease), (Duration::from_millis(2500), Duration::from_secs(10)));
        assert_eq!(q.result_ttl, Duration::from_secs(600));
        let all = Given {
            ack_wait: true,
            max_deliver: true,
            max_ack_pending: true,
            replicas: true,
            client_lease: true,
            result_ttl: true,
        };
        assert_eq!(q.given, all, "a setting from the environment must match the queue's");
        let none = QueueConfig::from_lookup(|_| None).unwrap();
        assert_eq!(none, QueueConfig::default());
        let e = QueueConfig::from_lookup(|v| (v == MAX_ACK_PENDING_ENV).then(|| "many".into())).unwrap_err();
        assert!(e.to_string().contains("MULTIPROC_NATS_MAX_ACK_PENDING=many is not a number"), "{e}");
    }

    #[test]
    fn replicas_are_one_to_five() {
        assert_eq!(QueueConfig::default().replicas, 1);
        assert_eq!(QueueConfig::default().replicas(3).unwrap().replicas, 3);
        for n in [0, 6, 100] {
            let e = QueueConfig::default().replicas(n).unwrap_err().to_string();
            assert!(e.contains(&format!("replicas {n}")) && e.contains("1 to 5"), "{e}");
        }
    }
}
