//! The request-end hook: a [`Meter`] rides in the response body and, when the body is done (sent
//! whole, cut off, or dropped), counts the request once on its server and its service and writes
//! its access-log line. Counting is a few relaxed atomic increments; the log line is formatted on
//! the request's thread and handed to a writer thread over a channel, so no request waits for a
//! disk.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime};

use super::{Affinity, ServiceStats};
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

enum Msg {
    Line(String),
    Reopen,
}

/// The access log: a format and a writer thread.
#[derive(Debug)]
pub struct AccessLog {
    format: Format,
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl AccessLog {
    /// Start the writer. A file that cannot be opened is an error now, not a silent loss later.
    pub fn start(format: Format, target: Target) -> std::io::Result<Arc<AccessLog>> {
        let mut out = open(&target)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name("tether-access-log".into())
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    let mut reopen = false;
                    let mut write = |m: Msg, out: &mut Box<dyn std::io::Write + Send>| match m {
                        Msg::Line(l) => {
                            let _ = out.write_all(l.as_bytes());
                        }
                        Msg::Reopen => reopen = true,
                    };
                    write(msg, &mut out);
                    // Whatever queued meanwhile goes out in the same write.
                    while let Ok(m) = rx.try_recv() {
                        write(m, &mut out);
                    }
                    let _ = out.flush();
                    if reopen {
                        match open(&target) {
                            Ok(o) => out = o,
                            Err(e) => tracing::error!(error = %e, "access log: cannot reopen; still writing to the old file"),
                        }
                    }
                }
            })?;
        Ok(Arc::new(AccessLog { format, tx }))
    }

    /// Reopen the file (after `logrotate` moved it away).
    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }

    fn write(&self, line: String) {
        let _ = self.tx.send(Msg::Line(line));
    }
}

fn open(target: &Target) -> std::io::Result<Box<dyn std::io::Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::BufWriter::new(std::io::stdout())),
        Target::File(p) => Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
        )),
    })
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
}

/// One request, counted when it ends.
#[derive(Debug)]
pub struct Meter {
    started: Instant,
    method: u8,
    pub status: u16,
    pub service: Option<Arc<ServiceStats>>,
    pub server: Option<Arc<Backend>>,
    pub affinity: Affinity,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub log: Option<Box<LogFields>>,
}

impl Meter {
    pub fn new(started: Instant, method: u8) -> Meter {
        Meter {
            started,
            method,
            status: 0,
            service: None,
            server: None,
            affinity: Affinity::None,
            bytes_in: 0,
            bytes_out: 0,
            log: None,
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let us = self.started.elapsed().as_micros() as u64;
        let class = usize::from((self.status / 100).clamp(1, 5) - 1);
        if let Some(b) = &self.server {
            let s = &b.stats;
            s.by_class[class].fetch_add(1, Relaxed);
            s.bytes_in.fetch_add(self.bytes_in, Relaxed);
            s.bytes_out.fetch_add(self.bytes_out, Relaxed);
            s.latency.observe(us);
            match self.affinity {
                Affinity::New | Affinity::Forged => {
                    s.new_pins.fetch_add(1, Relaxed);
                }
                Affinity::Rebalanced => {
                    s.rebalanced.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
        if let Some(svc) = &self.service {
            svc.count(self.method, self.status);
            svc.latency.observe(us);
            svc.note_affinity(self.affinity);
            svc.bytes_in.fetch_add(self.bytes_in, Relaxed);
            svc.bytes_out.fetch_add(self.bytes_out, Relaxed);
        }
        if let Some(f) = self.log.take() {
            let line = match f.log.format {
                Format::Common => common(self, &f, us),
                Format::Json => json(self, &f, us),
            };
            f.log.write(line);
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
/// duration_ms=... affinity=... host=... bytes_in=...`.
fn common(m: &Meter, f: &LogFields, us: u64) -> String {
    let mut l = String::with_capacity(192);
    let _ = writeln!(
        l,
        "{} - - [{}] \"{} {} {}\" {} {} route={} service={} server={} duration_ms={:.3} affinity={} host={} bytes_in={}",
        f.client,
        clf_date(SystemTime::now()),
        f.method,
        f.target.replace('"', "%22"),
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
    );
    l
}

fn json(m: &Meter, f: &LogFields, us: u64) -> String {
    let mut l = String::with_capacity(256);
    l.push_str("{\"time\":\"");
    l.push_str(&humantime_rfc3339(SystemTime::now()));
    l.push_str("\",\"client\":\"");
    let _ = write!(l, "{}", f.client);
    l.push_str("\",\"method\":");
    quote(&mut l, f.method.as_str());
    l.push_str(",\"path\":");
    quote(&mut l, &f.target);
    l.push_str(",\"host\":");
    quote(&mut l, &f.host);
    let _ = write!(
        l,
        ",\"protocol\":\"{}\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3},\"route\":",
        version(f.version),
        m.status,
        m.bytes_in,
        m.bytes_out,
        us as f64 / 1000.0
    );
    opt(&mut l, f.route.as_deref());
    l.push_str(",\"service\":");
    opt(&mut l, m.service.as_ref().map(|s| &*s.name));
    l.push_str(",\"server\":");
    opt(&mut l, m.server.as_ref().map(|s| &*s.name));
    l.push_str(",\"affinity\":");
    match m.affinity {
        Affinity::None => l.push_str("null"),
        a => quote(&mut l, a.as_str()),
    }
    l.push_str("}\n");
    l
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

/// `2026-12-02T01:02:03.456Z`.
fn humantime_rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `02/Dec/2026:01:02:03 +0000`.
fn clf_date(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!(
        "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    )
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
        assert_eq!(humantime_rfc3339(t), "2026-12-02T01:02:03.456Z");
        assert_eq!(clf_date(t), "02/Dec/2026:01:02:03 +0000");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(humantime_rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        quote(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#""a\"b\\c\u000ad""#);
    }
}
