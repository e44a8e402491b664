//! The request-end hook: a [`Meter`] rides in the response body and, when the body is done (sent
//! whole, cut off, or dropped), counts the request once on its server and its service and writes
//! its access-log line. Counting is a few relaxed atomic increments; the log line is formatted on
//! the request's thread, in a buffer of that thread's, and queued for a writer thread that writes
//! whole batches, so no request waits for a disk.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::stats::{Affinity, ServiceStats};
use crate::upstream::registry::Backend;

/// Access-log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// NCSA common log format, then `key=value` fields Tether adds.
    Common,
    /// One JSON object per line.
    Json,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    /// Appended to; reopened on [`AccessLog::reopen`] (SIGHUP), for log rotation.
    File(PathBuf),
}

/// Lines waiting for the writer, and what it is asked to do.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    reopen: bool,
    closed: bool,
    /// Lines dropped because the writer fell [`MAX_PENDING`] behind.
    dropped: u64,
}

#[derive(Debug, Default)]
struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The writer writes at least this often...
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// ...and at once when this much is waiting.
const WRITE_AT: usize = 256 * 1024;
/// Beyond this much waiting (a disk that cannot keep up), lines are dropped and counted.
const MAX_PENDING: usize = 16 << 20;

/// The access log: a format, a queue of formatted lines and a writer thread. A request appends
/// its line to the queue under a short lock (a copy of a few hundred bytes); the writer takes
/// the whole queue at once, at most every 200 ms, so the log costs one write system call per
/// batch, never one per request, and no request waits for a disk.
#[derive(Debug)]
pub struct AccessLog {
    format: Format,
    queue: Arc<Queue>,
}

impl AccessLog {
    /// Start the writer. A file that cannot be opened is an error now, not a silent loss later.
    pub fn start(format: Format, target: Target) -> std::io::Result<Arc<AccessLog>> {
        let mut out = open(&target)?;
        let queue: Arc<Queue> = Arc::default();
        let q = queue.clone();
        std::thread::Builder::new()
            .name("tether-access-log".into())
            .spawn(move || loop {
                let (bytes, reopen, closed, dropped) = {
                    let mut p = q.pending.lock().expect("access log queue poisoned");
                    if p.bytes.len() < WRITE_AT && !p.reopen && !p.closed {
                        p = q
                            .wake
                            .wait_timeout(p, FLUSH_EVERY)
                            .expect("access log queue poisoned")
                            .0;
                    }
                    let bytes = std::mem::take(&mut p.bytes);
                    (bytes, std::mem::take(&mut p.reopen), p.closed, std::mem::take(&mut p.dropped))
                };
                if dropped > 0 {
                    tracing::warn!(lines = dropped, "access log: the disk fell behind; lines dropped");
                }
                if !bytes.is_empty() {
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
                if reopen {
                    match open(&target) {
                        Ok(o) => out = o,
                        Err(e) => tracing::error!(error = %e, "access log: cannot reopen; still writing to the old file"),
                    }
                }
                if closed {
                    return;
                }
            })?;
        Ok(Arc::new(AccessLog { format, queue }))
    }

    /// Reopen the file (after `logrotate` moved it away).
    pub fn reopen(&self) {
        self.queue
            .pending
            .lock()
            .expect("access log queue poisoned")
            .reopen = true;
        self.queue.wake.notify_one();
    }

    /// The line of a TCP connection that ended ([`crate::tcp`]).
    pub fn connection(&self, c: &ConnectionLine<'_>) {
        let mut l = String::with_capacity(256);
        let ms = c.duration.as_secs_f64() * 1e3;
        match self.format {
            Format::Common => {
                let _ = writeln!(
                    l,
                    "{} - - [{}] \"TCP {}\" - {} router={} service={} server={} duration_ms={ms:.3} bytes_in={} end={}",
                    c.client.ip(),
                    Clf(SystemTime::now()),
                    c.router,
                    c.bytes_out,
                    c.router,
                    c.service,
                    c.server.unwrap_or("-"),
                    c.bytes_in,
                    c.end.replace(' ', "_"),
                );
            }
            Format::Json => {
                l.push_str("{\"time\":\"");
                rfc3339(SystemTime::now(), &mut l);
                let _ = write!(
                    l,
                    "\",\"client\":\"{}\",\"protocol\":\"TCP\",\"router\":",
                    c.client.ip()
                );
                quote(&mut l, c.router);
                l.push_str(",\"service\":");
                quote(&mut l, c.service);
                l.push_str(",\"server\":");
                opt(&mut l, c.server);
                let _ = writeln!(
                    l,
                    ",\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{ms:.3},\"end\":\"{}\"}}",
                    c.bytes_in, c.bytes_out, c.end
                );
            }
        }
        self.write(&l);
    }

    fn write(&self, line: &str) {
        let mut p = self
            .queue
            .pending
            .lock()
            .expect("access log queue poisoned");
        if p.bytes.len() + line.len() > MAX_PENDING {
            p.dropped += 1;
            return;
        }
        p.bytes.extend_from_slice(line.as_bytes());
        let full = p.bytes.len() >= WRITE_AT;
        drop(p);
        if full {
            self.queue.wake.notify_one();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.queue
            .pending
            .lock()
            .expect("access log queue poisoned")
            .closed = true;
        self.queue.wake.notify_one();
    }
}

fn open(target: &Target) -> std::io::Result<Box<dyn std::io::Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::stdout()),
        Target::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
        ),
    })
}

/// A TCP connection's access-log line: who, through which router to which server, how long,
/// how many bytes each way, and why it ended.
#[derive(Debug)]
pub struct ConnectionLine<'a> {
    pub client: std::net::SocketAddr,
    pub router: &'a str,
    pub service: &'a str,
    /// `None`: no server could be reached.
    pub server: Option<&'a str>,
    pub duration: Duration,
    /// Bytes from the client, and to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `closed`, `idle timeout`, `client error`, `server error`, `shutdown`, `no server`.
    pub end: &'a str,
}

/// What the log line says beyond the counters (kept only when there is a log).
#[derive(Debug)]
pub struct LogFields {
    pub log: Arc<AccessLog>,
    pub client: IpAddr,
    pub method: http::Method,
    pub target: String,
    pub version: http::Version,
    pub host: String,
    pub route: Option<String>,
    /// The middleware that answered the request itself, if one did.
    pub middleware: Option<std::sync::Arc<str>>,
}

/// One request, counted when it ends.
#[derive(Debug)]
pub struct Meter {
    started: Instant,
    method: u8,
    /// The route's counter slot in its service's ([`crate::stats::RouteCounts`]).
    pub route_slot: u8,
    pub status: u16,
    pub service: Option<Arc<ServiceStats>>,
    pub server: Option<Arc<Backend>>,
    pub affinity: Affinity,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub log: Option<Box<LogFields>>,
    /// Places the request holds until it is done (`in_flight`), given back when the meter is
    /// dropped: once the response's body has gone out, or the client went away.
    pub held: Vec<crate::middleware::Held>,
    /// The encoding the response is to be compressed in, if it qualifies (`compress`), until
    /// the response phase takes it.
    pub encode: Option<crate::middleware::Chosen>,
}

impl Meter {
    pub fn new(started: Instant, method: u8) -> Meter {
        Meter {
            started,
            method,
            route_slot: crate::stats::NO_ROUTE,
            status: 0,
            service: None,
            server: None,
            affinity: Affinity::None,
            bytes_in: 0,
            bytes_out: 0,
            log: None,
            held: Vec::new(),
            encode: None,
        }
    }
}

/// The status of a request whose client went away before its response began (an h2 stream
/// cancelled, a connection torn down): NGINX's 499, which operators' dashboards already know.
pub const CLIENT_CLOSED: u16 = 499;

impl Drop for Meter {
    fn drop(&mut self) {
        if self.status == 0 {
            self.status = CLIENT_CLOSED;
        }
        let us = self.started.elapsed().as_micros() as u64;
        let class = usize::from((self.status / 100).clamp(1, 5) - 1);
        let bytes = (self.bytes_in, self.bytes_out);
        if let Some(b) = &self.server {
            b.stats.count_request(class, bytes, us, self.affinity);
        }
        if let Some(svc) = &self.service {
            svc.count_request(self.method, self.status, bytes, us, self.affinity);
            svc.routes.count(self.route_slot, class);
        }
        if let Some(f) = self.log.take() {
            thread_local! {
                /// Each thread formats its lines in one buffer, kept between requests.
                static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
            }
            LINE.with_borrow_mut(|l| {
                l.clear();
                match f.log.format {
                    Format::Common => common(self, &f, us, l),
                    Format::Json => json(self, &f, us, l),
                }
                f.log.write(l);
            });
        }
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// `client - - [date] "GET /path HTTP/1.1" 200 123 route=... service=... server=...
/// duration_ms=... affinity=... host=... bytes_in=... middleware=...`.
fn common(m: &Meter, f: &LogFields, us: u64, l: &mut String) {
    let _ = writeln!(
        l,
        "{} - - [{}] \"{} {} {}\" {} {} route={} service={} server={} duration_ms={:.3} affinity={} host={} bytes_in={} middleware={}",
        f.client,
        Clf(SystemTime::now()),
        f.method,
        Escaped(&f.target),
        version(f.version),
        m.status,
        m.bytes_out,
        f.route.as_deref().unwrap_or("-"),
        m.service.as_ref().map_or("-", |s| &s.name),
        m.server.as_ref().map_or("-", |s| &s.name),
        us as f64 / 1000.0,
        m.affinity.as_str(),
        if f.host.is_empty() { "-" } else { f.host.as_str() },
        m.bytes_in,
        f.middleware.as_deref().unwrap_or("-"),
    );
}

fn json(m: &Meter, f: &LogFields, us: u64, l: &mut String) {
    l.push_str("{\"time\":\"");
    rfc3339(SystemTime::now(), l);
    l.push_str("\",\"client\":\"");
    let _ = write!(l, "{}", f.client);
    l.push_str("\",\"method\":");
    quote(l, f.method.as_str());
    l.push_str(",\"path\":");
    quote(l, &f.target);
    l.push_str(",\"host\":");
    quote(l, &f.host);
    let _ = write!(
        l,
        ",\"protocol\":\"{}\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3},\"route\":",
        version(f.version),
        m.status,
        m.bytes_in,
        m.bytes_out,
        us as f64 / 1000.0
    );
    opt(l, f.route.as_deref());
    l.push_str(",\"service\":");
    opt(l, m.service.as_ref().map(|s| &*s.name));
    l.push_str(",\"server\":");
    opt(l, m.server.as_ref().map(|s| &*s.name));
    l.push_str(",\"affinity\":");
    match m.affinity {
        Affinity::None => l.push_str("null"),
        a => quote(l, a.as_str()),
    }
    l.push_str(",\"middleware\":");
    opt(l, f.middleware.as_deref());
    l.push_str("}\n");
}

fn opt(l: &mut String, v: Option<&str>) {
    match v {
        Some(v) => quote(l, v),
        None => l.push_str("null"),
    }
}

/// A JSON string literal.
fn quote(l: &mut String, s: &str) {
    l.push('"');
    for c in s.chars() {
        match c {
            '"' => l.push_str("\\\""),
            '\\' => l.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(l, "\\u{:04x}", c as u32);
            }
            c => l.push(c),
        }
    }
    l.push('"');
}

/// `2026-12-02T01:02:03.456Z`, appended.
fn rfc3339(t: SystemTime, l: &mut String) {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    let _ = write!(l, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
}

/// `02/Dec/2026:01:02:03 +0000` when displayed.
struct Clf(SystemTime);

impl std::fmt::Display for Clf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (y, mo, d, h, mi, s, _) = civil(self.0);
        write!(
            f,
            "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
            MONTHS[(mo - 1) as usize]
        )
    }
}

/// A request target with `"` written as `%22` (the common format quotes it).
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, part) in self.0.split('"').enumerate() {
            if i > 0 {
                f.write_str("%22")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

/// UTC calendar fields of `t` (days-from-civil inverted, Howard Hinnant's algorithm).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_utc_calendar_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_173_323_456);
        let mut s = String::new();
        rfc3339(t, &mut s);
        assert_eq!(s, "2026-12-02T01:02:03.456Z");
        assert_eq!(Clf(t).to_string(), "02/Dec/2026:01:02:03 +0000");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        let mut s = String::new();
        rfc3339(leap, &mut s);
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        quote(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#""a\"b\\c\u000ad""#);
    }
}
