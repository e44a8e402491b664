//! The loop that keeps every wanted certificate valid: on each change of what the routes ask
//! for, and whenever a renewal or a retry falls due, each wanted certificate is looked at:
//!
//! - a name a file or API certificate serves is left alone ("covered"): nothing is ordered;
//! - a stored certificate that is not yet due serves (ACME's certificates rank above labels');
//! - one that is missing or due is ordered under the store's lock, within the resolver's
//!   `max_orders_per_hour`, and a failed order is retried with exponential backoff, from 1
//!   minute up to 1 day, while the previous certificate (if any) keeps serving.
//!
//! A certificate is due at `renew_before` before expiry (a third of its lifetime by default),
//! less a jitter of at most 1% of its lifetime (capped at 1 h), fixed per certificate, so that
//! replicas and names do not all renew in the same second.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use instant_acme::{Account, AccountCredentials, NewAccount};
use tether_model::acme::{AcmeResolver, Wanted};
use tether_model::{CertificateDecl, CertificatePem};
use tether_proxy::front::tls::certs::{CertStore, ACME_SOURCE};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::order::{self, unix, OrderError};
use crate::status::{CertState, LastError, Orders, State};
use crate::store::{account_id, cert_id, SharedStatus, Store, StoredCert};

const MIN_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(86_400);
/// How soon to look again at a certificate another process is ordering.
const HELD_ELSEWHERE: Duration = Duration::from_secs(5);
const HOUR: Duration = Duration::from_secs(3600);

/// The backoff after `failures` failed orders in a row: 1 min, 2, 4, ... up to 1 day.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    MIN_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF)
}

/// The most a renewal is moved earlier: 1% of the lifetime, at most an hour.
pub fn max_jitter(lifetime: Duration) -> Duration {
    (lifetime / 100).min(HOUR)
}

/// The manager's state.
pub(crate) struct Manager {
    pub resolvers: HashMap<String, AcmeResolver>,
    pub store: Arc<Store>,
    pub certs: Arc<CertStore>,
    pub status: Arc<Mutex<BTreeMap<String, CertState>>>,
    pub orders: Arc<Orders>,
    accounts: HashMap<String, Account>,
    /// When each resolver placed its orders of the last hour.
    placed: HashMap<String, VecDeque<Instant>>,
    /// Each certificate's fraction of the largest jitter, drawn once.
    jitter: HashMap<String, f64>,
    /// Resolvers whose stored account the CA no longer knows.
    fresh_account: std::collections::HashSet<String>,
}

impl Manager {
    pub fn new(
        resolvers: Vec<AcmeResolver>,
        store: Arc<Store>,
        certs: Arc<CertStore>,
        status: Arc<Mutex<BTreeMap<String, CertState>>>,
        orders: Arc<Orders>,
    ) -> Manager {
        Manager {
            resolvers: resolvers.into_iter().map(|r| (r.name.clone(), r)).collect(),
            store,
            certs,
            status,
            orders,
            accounts: HashMap::new(),
            placed: HashMap::new(),
            jitter: HashMap::new(),
            fresh_account: Default::default(),
        }
    }

    /// Run until `wanted`'s sender is dropped. A pass runs when the routes' wants change, when
    /// another process writes a certificate or a status to the store, and when something falls
    /// due.
    pub async fn run(mut self, mut wanted: watch::Receiver<Vec<Wanted>>) {
        let mut stored = Some(self.store.changed());
        loop {
            let list = wanted.borrow_and_update().clone();
            let next = self.pass(&list).await;
            let store_changed = async {
                match &mut stored {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            stored = None;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() { return },
                () = store_changed => {}
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Look at every wanted certificate once; when to look again.
    pub async fn pass(&mut self, wanted: &[Wanted]) -> Instant {
        let mut next = Instant::now() + HOUR;
        let stored = match self.store.certs().await {
            Ok(s) => s.into_iter().collect::<HashMap<_, _>>(),
            Err(e) => {
                tracing::error!("ACME: the store cannot be read: {e}");
                return Instant::now() + MIN_BACKOFF;
            }
        };
        self.serve(wanted, &stored);
        let statuses: HashMap<String, SharedStatus> = match self.store.statuses().await {
            Ok(s) => s.into_iter().collect(),
            Err(e) => {
                tracing::error!("ACME: the store cannot be read: {e}");
                return Instant::now() + MIN_BACKOFF;
            }
        };
        let mut seen = Vec::new();
        for w in wanted {
            let id = cert_id(&w.resolver, &w.names);
            if seen.contains(&id) {
                continue;
            }
            seen.push(id.clone());
            let shared = statuses.get(&id);
            if let Some(at) = self.look_at(w, &id, stored.get(&id), shared).await {
                next = next.min(at);
            }
        }
        // What no route asks for any more is no longer shown.
        self.status
            .lock()
            .expect("ACME status poisoned")
            .retain(|id, _| seen.contains(id));
        next
    }

    /// Serve the stored certificates the routes ask for (and that have not expired).
    fn serve(&self, wanted: &[Wanted], stored: &HashMap<String, StoredCert>) {
        let now = unix(SystemTime::now());
        let mut decls = Vec::new();
        for w in wanted {
            let id = cert_id(&w.resolver, &w.names);
            let Some(c) = stored.get(&id) else { continue };
            if c.not_after <= now || decls.iter().any(|d: &CertificateDecl| d.name == id) {
                continue;
            }
            decls.push(CertificateDecl {
                name: id.clone(),
                origin: format!("acme {} ({})", c.resolver, c.names.join(", ")),
                pem: CertificatePem::Text {
                    cert: c.cert_pem.clone(),
                    key: c.key_pem.clone(),
                },
                default: false,
            });
        }
        for p in self.certs.set_source(ACME_SOURCE, decls) {
            tracing::error!("ACME: a stored certificate does not serve: {p}");
        }
    }

    fn set(&self, id: &str, f: impl FnOnce(&mut CertState)) {
        let mut s = self.status.lock().expect("ACME status poisoned");
        f(s.entry(id.to_string()).or_default());
    }

    /// One wanted certificate; when it next needs a look.
    async fn look_at(
        &mut self,
        w: &Wanted,
        id: &str,
        stored: Option<&StoredCert>,
        shared: Option<&SharedStatus>,
    ) -> Option<Instant> {
        let resolver = self.resolvers.get(&w.resolver)?.clone();
        self.set(id, |s| {
            s.id = id.to_string();
            s.resolver = w.resolver.clone();
            s.names = w.names.clone();
        });
        if w.names.iter().all(|n| self.certs.covered_above_acme(n)) {
            self.set(id, |s| s.state = State::Covered);
            return None;
        }
        let now_sys = SystemTime::now();
        let now = Instant::now();
        if let Some(c) = stored {
            let due = self.due(id, &resolver, c);
            self.set(id, |s| {
                s.not_after = Some(at(c.not_after));
                s.serial = Some(c.serial.clone());
                s.next_renewal = Some(due);
            });
            if let Ok(wait) = due.duration_since(now_sys) {
                self.set(id, |s| s.state = State::Valid);
                return Some(now + wait);
            }
        }
        // The backoff after failed orders, whichever process placed them.
        if let Some(st) = shared {
            let when = at(st.next_attempt);
            self.set(id, |s| {
                s.failures = st.failures;
                s.next_attempt = Some(when);
                s.last_error = Some(LastError {
                    message: st.message.clone(),
                    problem: st.problem.clone(),
                    at: at(st.at),
                });
            });
            if let Ok(wait) = when.duration_since(now_sys) {
                self.set(id, |s| s.state = State::Failed);
                return Some(now + wait);
            }
        }
        // max_orders_per_hour.
        let placed = self.placed.entry(w.resolver.clone()).or_default();
        while placed
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            placed.pop_front();
        }
        if placed.len() >= resolver.max_orders_per_hour as usize {
            let free = placed.front().map_or(now, |t| *t + HOUR);
            let m = format!(
                "max_orders_per_hour ({}) reached for resolver {}: the next order waits until an hour after the oldest",
                resolver.max_orders_per_hour, w.resolver
            );
            tracing::warn!(certificate = %id, "ACME: {m}");
            self.set(id, |s| {
                s.state = State::Waiting;
                s.next_attempt = Some(SystemTime::now() + free.duration_since(now));
                s.last_error = Some(LastError::new(m, None));
            });
            return Some(free);
        }
        let lock = match self.store.lock(id).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                self.set(id, |s| s.state = State::OrderingElsewhere);
                return Some(now + HELD_ELSEWHERE);
            }
            Err(e) => {
                return Some(
                    self.failed(id, &w.resolver, shared, OrderError::from_store(e))
                        .await,
                );
            }
        };
        // Another process may have ordered it while this one waited for the lock.
        if let Ok(all) = self.store.certs().await {
            if all.iter().any(|(i, c)| i == id && Some(c) != stored) {
                tracing::info!(certificate = %id, "ACME: another process ordered it");
                drop(lock);
                return Some(now);
            }
        }
        self.placed
            .entry(w.resolver.clone())
            .or_default()
            .push_back(now);
        self.set(id, |s| s.state = State::Ordering);
        tracing::info!(certificate = %id, resolver = %w.resolver, names = %w.names.join(","), "ACME: ordering");
        let mut result = self.order_once(&resolver, &w.names, &lock).await;
        if matches!(&result, Err(e) if e.account_gone()) {
            // The CA no longer knows the account (a CA reset, a staging wipe): a new account,
            // and the order again.
            tracing::warn!(resolver = %w.resolver, "ACME: the CA does not know the account any more: making a new one");
            self.accounts.remove(&resolver.name);
            self.fresh_account.insert(resolver.name.clone());
            result = self.order_once(&resolver, &w.names, &lock).await;
        }
        let next = match result {
            Ok(cert) => match self.store.put_cert(id, &cert).await {
                Ok(()) => {
                    self.orders.add(&w.resolver, "success");
                    if shared.is_some() {
                        if let Err(e) = self.store.del_status(id).await {
                            tracing::warn!(certificate = %id, "ACME: clearing the failure: {e}");
                        }
                    }
                    tracing::info!(certificate = %id, serial = %cert.serial, not_after = %humantime::format_rfc3339_seconds(at(cert.not_after)), "ACME: certificate issued");
                    self.set(id, |s| {
                        s.last_error = None;
                        s.next_attempt = None;
                        s.orders += 1;
                    });
                    let lifetime =
                        Duration::from_secs(cert.not_after.saturating_sub(cert.not_before));
                    if resolver.renew_before.is_some_and(|b| b >= lifetime) {
                        tracing::warn!(certificate = %id, "ACME: renew_before is as long as the certificate's lifetime ({}): it is due again at once, and renewed as often as max_orders_per_hour allows", humantime::format_duration(lifetime));
                    }
                    // Serve it at once, and work out its renewal.
                    now
                }
                Err(e) => {
                    self.failed(id, &w.resolver, shared, OrderError::from_store(e))
                        .await
                }
            },
            Err(e) => self.failed(id, &w.resolver, shared, e).await,
        };
        drop(lock);
        Some(next)
    }

    /// When `c` is due for renewal: `renew_before` before expiry, less its jitter.
    fn due(&mut self, id: &str, resolver: &AcmeResolver, c: &StoredCert) -> SystemTime {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(c.not_before);
        let na = SystemTime::UNIX_EPOCH + Duration::from_secs(c.not_after);
        let lifetime = na.duration_since(nb).unwrap_or(Duration::ZERO);
        let f = *self
            .jitter
            .entry(id.to_string())
            .or_insert_with(fastrand::f64);
        let jitter = max_jitter(lifetime).mul_f64(f);
        let at = resolver.renew_at(nb, na);
        at.checked_sub(jitter).unwrap_or(at)
    }

    /// One order through the resolver's account.
    async fn order_once(
        &mut self,
        resolver: &AcmeResolver,
        names: &[String],
        lock: &crate::store::Lock,
    ) -> Result<StoredCert, OrderError> {
        let account = self.account(resolver).await?;
        order::order(&account, resolver, names, &self.store, lock).await
    }

    /// Record a failed order in the store (every process then waits out the backoff and shows
    /// the error); when to try again.
    async fn failed(
        &mut self,
        id: &str,
        resolver: &str,
        before: Option<&SharedStatus>,
        e: OrderError,
    ) -> Instant {
        self.orders.add(resolver, "error");
        let failures = before.map_or(0, |b| b.failures) + 1;
        let wait = backoff(failures);
        let now = SystemTime::now();
        tracing::error!(certificate = %id, %resolver, retry_in = %humantime::format_duration(wait), "ACME: order failed: {e}");
        let st = SharedStatus {
            failures,
            next_attempt: unix(now + wait),
            message: e.message.clone(),
            problem: e.problem.clone(),
            at: unix(now),
        };
        if let Err(se) = self.store.put_status(id, &st).await {
            tracing::warn!(certificate = %id, "ACME: recording the failure: {se}");
        }
        self.set(id, |s| {
            s.state = State::Failed;
            s.failures = failures;
            s.orders += 1;
            s.next_attempt = Some(now + wait);
            s.last_error = Some(LastError::new(e.message.clone(), e.problem.clone()));
        });
        Instant::now() + wait
    }

    /// The resolver's account: the stored one, else a new one (stored at once).
    async fn account(&mut self, r: &AcmeResolver) -> Result<Account, OrderError> {
        if let Some(a) = self.accounts.get(&r.name) {
            return Ok(a.clone());
        }
        let id = account_id(&r.name, &r.ca, &r.email);
        let builder = || -> Result<_, OrderError> {
            Ok(Account::builder_with_http(crate::client::http(
                r.ca_root.as_deref(),
            )?))
        };
        let stored = if self.fresh_account.remove(&r.name) {
            None
        } else {
            self.store
                .account(&id)
                .await
                .map_err(OrderError::from_store)?
        };
        let account =
            match stored.and_then(|b| serde_json::from_slice::<AccountCredentials>(&b).ok()) {
                Some(creds) => builder()?.from_credentials(creds).await?,
                None => {
                    let contact = format!("mailto:{}", r.email);
                    let (account, creds) = builder()?
                        .create(
                            &NewAccount {
                                contact: &[&contact],
                                terms_of_service_agreed: true,
                                only_return_existing: false,
                            },
                            r.ca.clone(),
                            None,
                        )
                        .await?;
                    let bytes = serde_json::to_vec(&creds)
                        .map_err(|e| OrderError::plain(format!("account credentials: {e}")))?;
                    self.store
                        .put_account(&id, &bytes)
                        .await
                        .map_err(OrderError::from_store)?;
                    tracing::info!(resolver = %r.name, ca = %r.ca, "ACME: account created");
                    account
                }
            };
        self.accounts.insert(r.name.clone(), account.clone());
        Ok(account)
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_to_a_day() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(5), Duration::from_secs(960));
        assert_eq!(backoff(12), MAX_BACKOFF);
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }

    #[test]
    fn jitter_is_a_hundredth_of_the_lifetime_at_most_an_hour() {
        assert_eq!(
            max_jitter(Duration::from_secs(12 * 3600)),
            Duration::from_millis(432_000)
        );
        assert_eq!(max_jitter(Duration::from_secs(90 * 86_400)), HOUR);
    }
}
