//! End-to-end tests: a real Tether on 127.0.0.1 in front of real whoami servers.
//! One binary, so the suite links once; each module is one behaviour group.

mod support;

mod acme;
mod api;
mod balancing;
mod certificates;
mod cli;
mod compression;
mod dead_server;
mod fairness;
mod hostile;
mod hostile_h2;
mod hostile_table;
mod https_routes;
mod middlewares;
mod observe;
mod proxy_protocol;
mod proxying;
mod reload;
mod stats_page;
mod sticky;
mod tcp;
mod tls;
mod tls_servers;
mod traffic;
mod upgrade;
mod upgrade_tcp;
mod waiting;
mod workers;
