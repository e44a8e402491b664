//! `GET /metrics`: the data plane's counters in the Prometheus text format, encoded by
//! `prometheus-client` from the table being served, so the series of a removed service or server
//! disappear with it (bounded cardinality: services × servers, plus services × methods × codes).
//!
//! Names follow Traefik v3's where one exists (`tether_service_requests_total{service,code,
//! method}`, `tether_service_request_duration_seconds`, `tether_open_connections{entrypoint}`,
//! `tether_config_reloads_total`), and add what Traefik does not export: per-server requests and
//! in-flight, affinity outcomes, the discovery lag (`tether_discovery_lag_seconds{source}`, from a
//! container's or task's event to its table serving), the applied version as an info metric, and
//! each served certificate's expiry (`tether_tls_certs_not_after`, as Traefik's), and ACME's
//! orders (`tether_acme_orders_total{resolver,result}`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tether_control::Control;
use tether_proxy::front::tls::certs::CertStore;
use tether_proxy::stats::{EntrypointStats, Snapshot, BOUNDS_US};

use crate::AppState;

/// What one scrape reads.
#[derive(Debug)]
struct Tether {
    control: Arc<Control>,
    entrypoints: Arc<[EntrypointStats]>,
    certificates: Option<Arc<CertStore>>,
}

/// `GET /metrics`: OpenMetrics to a scraper that asks for it (Prometheus does), else the
/// classic text format 0.0.4 (what `promtool check metrics` and older tools read).
pub async fn metrics(State(s): State<AppState>, headers: http::HeaderMap) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Tether {
        control: s.control.clone(),
        entrypoints: s.entrypoints.clone(),
        certificates: s.certificates.clone(),
    }));
    let mut body = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        tracing::error!(error = %e, "encoding /metrics failed");
        return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let open_metrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if open_metrics {
        return (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        classic(&body),
    )
        .into_response()
}

/// The same samples in the classic text format: a counter family's `HELP` and `TYPE` name its
/// samples (`_total`), and `UNIT` and `EOF`, which that format does not have, are left out.
fn classic(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut counters = std::collections::HashSet::new();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

type Labels = Vec<(&'static str, String)>;

/// One family: its descriptor, then a value per label set.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    rows: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut d = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, m) in rows {
        m.encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counters(rows: Vec<(Labels, u64)>) -> Vec<(Labels, ConstCounter<u64>)> {
    rows.into_iter()
        .map(|(l, v)| (l, ConstCounter::new(v)))
        .collect()
}

fn gauges(rows: Vec<(Labels, i64)>) -> Vec<(Labels, ConstGauge<i64>)> {
    rows.into_iter()
        .map(|(l, v)| (l, ConstGauge::new(v)))
        .collect()
}

/// The `tether_tcp_*` families: each TCP service's and server's connections (open now, piped
/// in all, failed to connect) and bytes each way (counted as they go).
fn tcp(
    enc: &mut DescriptorEncoder<'_>,
    table: &tether_proxy::RoutingTable,
) -> Result<(), std::fmt::Error> {
    let mut active = Vec::new();
    let mut connections = Vec::new();
    let mut errors = Vec::new();
    let mut bytes = Vec::new();
    for s in table.services.iter().filter(|s| s.protocol.is_tcp()) {
        let st = &s.stats;
        let svc = |server: Option<&str>| -> Labels {
            let mut l = vec![("service", s.name.clone())];
            l.push(("server", server.unwrap_or("(all)").to_string()));
            l
        };
        active.push((svc(None), i64::from(st.active.load(Relaxed))));
        connections.push((svc(None), st.traffic.connections()));
        errors.push((svc(None), st.traffic.connect_errors()));
        for (dir, n) in [
            ("in", st.traffic.bytes_in()),
            ("out", st.traffic.bytes_out()),
        ] {
            let mut l = svc(None);
            l.push(("direction", dir.to_string()));
            bytes.push((l, n));
        }
        for b in &s.backends {
            let l = || svc(Some(&b.name));
            active.push((l(), i64::from(b.state.in_flight())));
            connections.push((l(), b.stats.traffic.connections()));
            errors.push((l(), b.stats.traffic.connect_errors()));
            for (dir, n) in [
                ("in", b.stats.traffic.bytes_in()),
                ("out", b.stats.traffic.bytes_out()),
            ] {
                let mut l = l();
                l.push(("direction", dir.to_string()));
                bytes.push((l, n));
            }
        }
    }
    family(
        enc,
        "tether_tcp_active_connections",
        "TCP connections open now, by service and server (server=\"(all)\": the service's).",
        None,
        MetricType::Gauge,
        gauges(active),
    )?;
    family(
        enc,
        "tether_tcp_connections",
        "TCP connections piped to a server, by service and server.",
        None,
        MetricType::Counter,
        counters(connections),
    )?;
    family(
        enc,
        "tether_tcp_connect_errors",
        "Connects to a TCP service's server that failed (another server was then tried).",
        None,
        MetricType::Counter,
        counters(errors),
    )?;
    family(
        enc,
        "tether_tcp_bytes",
        "Bytes piped, by service, server and direction (in: from the client; out: to it).",
        None,
        MetricType::Counter,
        counters(bytes),
    )
}

/// A histogram snapshot in seconds, per-bucket counts as the encoder wants them.
struct Hist(Snapshot);

impl std::fmt::Debug for Hist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hist")
    }
}

impl EncodeMetric for Hist {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let mut last = 0;
        let buckets: Vec<(f64, u64)> = self
            .0
            .cumulative
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let bound = BOUNDS_US.get(i).map_or(f64::MAX, |b| *b as f64 / 1e6);
                let n = c - last;
                last = c;
                (bound, n)
            })
            .collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.sum_us as f64 / 1e6,
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for Tether {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let table = self.control.store().load_full();
        let svc = |name: &str| -> Labels { vec![("service", name.to_string())] };
        let srv = |s: &str, b: &str| -> Labels {
            vec![("service", s.to_string()), ("server", b.to_string())]
        };

        let mut requests = Vec::new();
        let mut durations = Vec::new();
        let mut sticky: [Vec<(Labels, u64)>; 4] = Default::default();
        let mut bytes: [Vec<(Labels, u64)>; 2] = Default::default();
        for s in table.services.iter().filter(|s| !s.protocol.is_tcp()) {
            for (method, code, n) in s.stats.requests() {
                let mut l = svc(&s.name);
                l.push(("code", code));
                l.push(("method", method.to_string()));
                requests.push((l, n));
            }
            durations.push((svc(&s.name), Hist(s.stats.latency())));
            if s.sticky.is_some() {
                let st = s.stats.sticky();
                for (i, n) in [st.hits, st.misses, st.rebalanced, st.forged]
                    .into_iter()
                    .enumerate()
                {
                    sticky[i].push((svc(&s.name), n));
                }
            }
            bytes[0].push((svc(&s.name), s.stats.traffic.bytes_in()));
            bytes[1].push((svc(&s.name), s.stats.traffic.bytes_out()));
        }
        family(
            &mut enc,
            "tether_service_requests",
            "Requests answered, by service, status code (or class, for rare codes) and method.",
            None,
            MetricType::Counter,
            counters(requests),
        )?;
        family(
            &mut enc,
            "tether_service_request_duration",
            "Time from a request's arrival to the last byte of its response.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            durations,
        )?;
        let [req_bytes, resp_bytes] = bytes;
        family(
            &mut enc,
            "tether_service_requests_bytes",
            "Request body bytes received (bodies of known length).",
            None,
            MetricType::Counter,
            counters(req_bytes),
        )?;
        family(
            &mut enc,
            "tether_service_responses_bytes",
            "Response body bytes sent.",
            None,
            MetricType::Counter,
            counters(resp_bytes),
        )?;
        let [hits, misses, rebalanced, forged] = sticky;
        for (name, help, rows) in [
            ("tether_sticky_hits", "Requests whose affinity cookie's server took them.", hits),
            ("tether_sticky_misses", "Requests without an affinity cookie: pinned afresh.", misses),
            ("tether_sticky_rebalances", "Sessions moved: their server was gone, draining out or failed them.", rebalanced),
            ("tether_sticky_forged", "Affinity values Tether did not issue (forged, truncated, another service's): treated as absent.", forged),
        ] {
            family(&mut enc, name, help, None, MetricType::Counter, counters(rows))?;
        }
        let mut answered = Vec::new();
        let mut saved = Vec::new();
        for (route, middleware, counts) in self.control.registry().middleware_answers.read() {
            let s = counts.bytes_saved();
            if s > 0 {
                saved.push((
                    vec![("middleware", middleware.clone()), ("route", route.clone())],
                    s,
                ));
            }
            for (code, n) in counts.read() {
                let code = if code == 0 {
                    "other".to_string()
                } else {
                    code.to_string()
                };
                answered.push((
                    vec![
                        ("middleware", middleware.clone()),
                        ("route", route.clone()),
                        ("code", code),
                    ],
                    n,
                ));
            }
        }
        family(
            &mut enc,
            "tether_middleware_responses",
            "Requests a route's middleware answered itself (401, 403, 405, 429, redirects), and responses compress compressed (their status), by middleware, route and status.",
            None,
            MetricType::Counter,
            counters(answered),
        )?;
        family(
            &mut enc,
            "tether_compress_bytes_saved",
            "Bytes compress saved: the server's response bytes less the compressed bytes sent, by middleware and route.",
            None,
            MetricType::Counter,
            counters(saved),
        )?;

        let mut up = Vec::new();
        let mut in_flight = Vec::new();
        let mut server_requests = Vec::new();
        let mut retries = Vec::new();
        let mut pins = Vec::new();
        for s in &table.services {
            for b in &s.backends {
                let state = &b.state;
                up.push((srv(&s.name, &b.name), i64::from(state.takes_pinned())));
                if s.protocol.is_tcp() {
                    continue;
                }
                in_flight.push((srv(&s.name, &b.name), i64::from(state.in_flight())));
                for (i, n) in b.stats.by_class().into_iter().enumerate() {
                    if n > 0 {
                        let mut l = srv(&s.name, &b.name);
                        l.push(("code_class", format!("{}xx", i + 1)));
                        server_requests.push((l, n));
                    }
                }
                retries.push((srv(&s.name, &b.name), b.stats.retries()));
                pins.push((srv(&s.name, &b.name), state.pinned()));
            }
        }
        family(
            &mut enc,
            "tether_server_up",
            "1 while the server takes requests (not failed, not out of its drain), else 0.",
            None,
            MetricType::Gauge,
            gauges(up),
        )?;
        family(
            &mut enc,
            "tether_server_in_flight_requests",
            "Requests being served by the server now.",
            None,
            MetricType::Gauge,
            gauges(in_flight),
        )?;
        family(
            &mut enc,
            "tether_server_requests",
            "Responses from the server, by status class.",
            None,
            MetricType::Counter,
            counters(server_requests),
        )?;
        // Per route: a service's routes beyond its first eight share one series, route="(other)".
        let mut route_requests = Vec::new();
        let mut shared_seen = std::collections::HashSet::new();
        for r in table.routers.first().map_or(&[][..], |r| r.routes()) {
            let svc = &table.services[r.service];
            let (by_class, shared) = svc.stats.routes.of(&r.name);
            let route = if shared {
                if !shared_seen.insert(r.service) {
                    continue;
                }
                "(other)".to_string()
            } else {
                r.name.clone()
            };
            for (i, n) in by_class.iter().enumerate() {
                if *n > 0 {
                    let l = vec![
                        ("route", route.clone()),
                        ("service", svc.name.clone()),
                        ("code_class", format!("{}xx", i + 1)),
                    ];
                    route_requests.push((l, *n));
                }
            }
        }
        family(
            &mut enc,
            "tether_route_requests",
            "Responses to the requests a route matched, by status class.",
            None,
            MetricType::Counter,
            counters(route_requests),
        )?;
        family(
            &mut enc,
            "tether_server_retries",
            "Requests sent on to another server after this one failed them.",
            None,
            MetricType::Counter,
            counters(retries),
        )?;
        family(
            &mut enc,
            "tether_server_pinned_requests",
            "Requests that arrived pinned to the server by their affinity cookie.",
            None,
            MetricType::Counter,
            counters(pins),
        )?;

        tcp(&mut enc, &table)?;

        let names = self.control.entrypoints();
        let open = self
            .entrypoints
            .iter()
            .zip(names)
            .map(|(e, n)| (vec![("entrypoint", n.clone())], e.open()))
            .collect();
        family(
            &mut enc,
            "tether_open_connections",
            "Client connections open now, by entrypoint.",
            None,
            MetricType::Gauge,
            gauges(open),
        )?;
        let status = self.control.status();
        family(
            &mut enc,
            "tether_config_reloads",
            "Routing tables swapped in since start (a change that changes nothing swaps nothing).",
            None,
            MetricType::Counter,
            counters(vec![(Vec::new(), status.swaps)]),
        )?;
        let rejected = self
            .control
            .rejected_totals()
            .into_iter()
            .map(|(source, n)| (vec![("source", source)], n))
            .collect();
        family(
            &mut enc,
            "tether_config_rejected",
            "Inputs refused or left out, by source (a bad label, rule, API body or file).",
            None,
            MetricType::Counter,
            counters(rejected),
        )?;
        let lag = self
            .control
            .discovery_lag()
            .into_iter()
            .map(|(source, s)| (vec![("source", source)], Hist(s)))
            .collect();
        family(
            &mut enc,
            "tether_discovery_lag",
            "From a change at a source (a container's or task's event, by the engine's clock) to the table that holds it serving, by source.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            lag,
        )?;
        family(
            &mut enc,
            "tether_config_info",
            "The applied configuration's version (the hash /api/version shows); always 1.",
            None,
            MetricType::Gauge,
            gauges(vec![(vec![("version", status.version.clone())], 1)]),
        )?;
        if let Some(acme) = self.control.acme() {
            let rows = acme
                .orders()
                .into_iter()
                .map(|((resolver, result), n)| {
                    (vec![("resolver", resolver), ("result", result)], n)
                })
                .collect();
            family(
                &mut enc,
                "tether_acme_orders",
                "ACME orders this process placed, by resolver and result (success, error).",
                None,
                MetricType::Counter,
                counters(rows),
            )?;
        }
        if let Some(store) = &self.certificates {
            let rows = store
                .loaded()
                .into_iter()
                .map(|c| {
                    let until = c
                        .not_after
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    let labels = vec![
                        ("cn", c.names.first().cloned().unwrap_or_default()),
                        ("sans", c.names.join(",")),
                        ("serial", c.serial),
                        ("source", c.source),
                    ];
                    (labels, until)
                })
                .collect();
            family(
                &mut enc,
                "tether_tls_certs_not_after",
                "When each certificate being served expires, in seconds since the Unix epoch (Traefik's traefik_tls_certs_not_after): alert on it minus time() below a few days.",
                None,
                MetricType::Gauge,
                gauges(rows),
            )?;
        }
        Ok(())
    }
}
