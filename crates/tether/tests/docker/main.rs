//! End-to-end tests against the real Docker engine: Tether runs in the test process and follows
//! the engine; backends are `tether:dev` whoami containers. Each test sees only its own containers
//! (`--docker-constraint`), so tests run in parallel. Without an engine they skip loudly (and fail
//! under `CI=true`).

mod acme;
mod compose;
mod dialects;
mod discovery;
mod engine;
mod https;
mod lifecycle;
mod reach;
mod support;
mod tcp;
mod workers;
