//! The stats page as HTML: the whole page, or its live part alone (what the page's script fetches
//! every second). Every text from the configuration or a request is escaped.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{Page, ServerRow, ServiceRow};

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// `&`, `<`, `>`, `"` and `'` escaped for text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn page(p: &Page, filter: &str) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str("<title>Tether stats</title><style>");
    h.push_str(CSS);
    h.push_str("</style></head><body><header><h1>Tether</h1>");
    let _ = write!(
        h,
        "<form method=\"get\"><input id=\"filter\" name=\"filter\" type=\"search\" placeholder=\"Find a service, server or address\" value=\"{}\" autocomplete=\"off\"></form>",
        esc(filter)
    );
    h.push_str("</header><main id=\"live\">");
    h.push_str(&live(p));
    h.push_str("</main><script>");
    h.push_str(JS);
    h.push_str("</script></body></html>");
    h
}

fn time(t: Option<SystemTime>) -> String {
    t.map_or_else(
        || "never".into(),
        |t| humantime::format_rfc3339_seconds(t).to_string(),
    )
}

fn rate(r: f64) -> String {
    if r == 0.0 {
        "0".into()
    } else if r < 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.0}"),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The part refreshed every second: the version and sources, rejected inputs, the table.
pub(crate) fn live(p: &Page) -> String {
    let mut h = String::with_capacity(12 * 1024);
    let _ = write!(
        h,
        "<div class=\"meta\"><span>version <b id=\"version\">{}</b></span><span>applied {}</span>",
        esc(&p.version),
        time(p.applied_at)
    );
    for (name, version, problem) in &p.sources {
        let _ = write!(h, "<span>{} <b>{}</b>", esc(name), esc(version));
        if let Some(pr) = problem {
            let _ = write!(h, " <span class=\"problem\">{}</span>", esc(pr));
        }
        h.push_str("</span>");
    }
    h.push_str("</div>");
    if !p.rejections.is_empty() {
        h.push_str("<h2>Rejected inputs</h2><div class=\"scroll\"><table class=\"rejected\"><thead><tr><th class=\"l\">when</th><th class=\"l\">source</th><th class=\"l\">field</th><th class=\"l\">message</th></tr></thead><tbody>");
        for (at, source, field, message) in &p.rejections {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"field\">{}</td><td>{}</td></tr>",
                time(Some(*at)),
                esc(source),
                esc(field.as_deref().unwrap_or("–")),
                esc(message)
            );
        }
        h.push_str("</tbody></table></div>");
    }
    h.push_str(
        "<h2>Services and servers</h2><div class=\"scroll\"><table id=\"servers\"><thead><tr>",
    );
    for (i, c) in [
        "server",
        "address",
        "state",
        "weight",
        "req/s",
        "4xx/s",
        "5xx/s",
        "p50 ms",
        "p99 ms",
        "active",
        "requests",
        "in",
        "out",
        "retries",
        "pinned",
        "new pins",
        "rebalanced",
    ]
    .iter()
    .enumerate()
    {
        let class = if i < 3 { " class=\"l\"" } else { "" };
        let _ = write!(h, "<th{class}>{c}</th>");
    }
    h.push_str("</tr></thead>");
    for s in &p.services {
        service(&mut h, s);
    }
    h.push_str("</table></div>");
    if !p.routes.is_empty() {
        let _ = write!(
            h,
            "<details open><summary>{} routes</summary><div class=\"scroll\"><table><thead><tr><th class=\"l\">route</th><th class=\"l\">rule</th><th class=\"l\">service</th><th class=\"l\">source</th><th class=\"l\">middlewares (answered)</th><th>req/s</th><th>4xx/s</th><th>5xx/s</th><th>requests</th></tr></thead><tbody>",
            p.routes.len()
        );
        for r in &p.routes {
            let _ = write!(
                h,
                "<tr class=\"route\" data-route=\"{}\"><td>{}</td><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l middlewares\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"requests\">{}{}</td></tr>",
                esc(&r.name),
                esc(&r.name),
                esc(&r.rule),
                esc(&r.service),
                esc(&r.source),
                middlewares(&r.middlewares),
                rate(r.rps),
                rate(r.r4xx),
                rate(r.r5xx),
                r.requests,
                if r.shared {
                    " <small title=\"counted with this service's routes beyond its first eight\">(shared)</small>"
                } else {
                    ""
                }
            );
        }
        h.push_str("</tbody></table></div></details>");
    }
    if !p.acme.is_empty() {
        acme(&mut h, &p.acme);
    }
    h
}

/// The certificates ACME keeps: state, expiry, next renewal or attempt, the last error.
fn acme(h: &mut String, certs: &[tether_acme::CertState]) {
    let _ = write!(
        h,
        r#"<details open><summary>{} ACME certificates</summary><div class="scroll"><table class="acme"><thead><tr><th class="l">names</th><th class="l">resolver</th><th class="l">state</th><th class="l">valid until</th><th class="l">next renewal</th><th class="l">next attempt</th><th>failures</th><th class="l">last error</th></tr></thead><tbody>"#,
        certs.len()
    );
    for c in certs {
        let state = serde_json::to_value(c.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = write!(
            h,
            r#"<tr class="acme-cert"><td class="l">{}</td><td class="l">{}</td><td class="l state-{}">{}</td><td class="l">{}</td><td class="l">{}</td><td class="l">{}</td><td>{}</td><td class="l problem">{}</td></tr>"#,
            esc(&c.names.join(", ")),
            esc(&c.resolver),
            esc(&state),
            esc(&state.replace('_', " ")),
            time(c.not_after),
            time(c.next_renewal),
            time(c.next_attempt),
            c.failures,
            esc(c.last_error.as_ref().map_or("", |e| e.message.as_str()))
        );
    }
    h.push_str("</tbody></table></div></details>");
}

fn service(h: &mut String, s: &ServiceRow) {
    let _ = write!(
        h,
        "<tbody class=\"svc\" data-search=\"{}\"><tr><th colspan=\"17\">{} <span>{}</span><span>{} req/s</span>",
        esc(&s.name.to_lowercase()),
        esc(&s.name),
        esc(&s.source),
        rate(s.rps)
    );
    if let Some(a) = &s.affinity {
        let [hits, new, moved, forged] = s.sticky;
        let _ = write!(
            h,
            "<span>sticky ({}): {hits} hits, {new} new, {moved} rebalanced, <span class=\"forged\">{forged} forged</span></span>",
            esc(a)
        );
    }
    if let Some([active, connections, errors]) = s.tcp {
        let _ = write!(
            h,
            "<span>TCP: {active} open, {connections} connections, {errors} connect errors</span>"
        );
    }
    if s.waiting > 0 || s.waited > 0 {
        let _ = write!(
            h,
            "<span>waited for a server: {} now, {} in all, {} got none in time</span>",
            s.waiting, s.waited, s.wait_expired
        );
    }
    h.push_str("</th></tr>");
    if s.no_server {
        h.push_str("<tr class=\"srv noserver\"><td colspan=\"17\" class=\"l failed\">no server: requests wait for one (wait_for_server), then get 503</td></tr>");
    }
    for v in &s.servers {
        server(h, v);
    }
    h.push_str("</tbody>");
}

fn server(h: &mut String, v: &ServerRow) {
    let state = if v.state == "draining" {
        format!("draining ({} active)", v.in_flight)
    } else {
        v.state.to_string()
    };
    let _ = write!(
        h,
        "<tr class=\"srv\" data-search=\"{} {}\" data-server=\"{}\"><td>{}</td><td class=\"l\">{}</td><td class=\"l {}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"requests\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&v.name.to_lowercase()),
        esc(&v.address),
        esc(&v.name),
        esc(&v.name),
        esc(&v.address),
        v.state,
        esc(&state),
        v.weight.map_or_else(|| "–".into(), |w| w.to_string()),
        rate(v.rps),
        rate(v.r4xx),
        rate(v.r5xx),
        ms(v.p50_ms),
        ms(v.p99_ms),
        v.in_flight,
        v.requests,
        bytes(v.bytes_in),
        bytes(v.bytes_out),
        v.retries,
        v.pinned,
        v.new_pins,
        v.rebalanced,
    );
}

/// A route's middlewares, each with what it answered: `auth@file (401: 3)`.
fn middlewares(list: &[(String, Vec<(String, u64)>)]) -> String {
    if list.is_empty() {
        return "-".into();
    }
    list.iter()
        .map(|(name, answered)| {
            let counts: Vec<String> = answered
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect();
            if counts.is_empty() {
                esc(name)
            } else {
                format!("{} ({})", esc(name), counts.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_sizes_read_well() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(rate(0.5), "0.5");
        assert_eq!(ms(None), "–");
    }
}
