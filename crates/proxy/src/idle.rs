//! Client connection timeouts. A connection is in one of three phases: reading a request head
//! (from accept, or from the first byte after an idle spell), busy (requests in flight), or idle
//! (keep-alive, nothing in flight). It is closed when reading a head takes longer than the
//! request-header timeout (slowloris) or idling lasts longer than the idle timeout. The client
//! stream ([`Tracked`]) reports its reads to the connection's [`Activity`], replays the bytes read
//! to tell the protocol, and turns Nagle off before its second write.
//!
//! No connection arms a timer of its own: one [`Watchdog`] per server lists every connection's
//! activity and sweeps the list a few times a second, waking only the connections that overstayed.
//! A timer per connection cost a timer-wheel insertion and removal for each, and when its deadline
//! came first, a write to the runtime's eventfd (one per new connection, measured).

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

const READING: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

use tether_balance::state::now_ms;

pin_project_lite::pin_project! {
    /// [`Activity::respond_within`]: the exchange's output, or `None` once the watchdog says the
    /// response is late (the exchange is polled first, so a response that came in time wins).
    pub struct Within<'a, F> {
        #[pin]
        exchange: F,
        activity: &'a Activity,
    }
}

impl<F: std::future::Future> std::future::Future for Within<'_, F> {
    type Output = Option<F::Output>;

    // Out of line, so that the exchange's future is built in place in this wrapper's and polled
    // from here: inlined into the request's future, the exchange is moved in and its result out
    // again (callgrind, plain `/rr`: 14,546 instructions per request inlined, 14,401 out of line).
    #[inline(never)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let a = *this.activity;
        let out = match this.exchange.poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending if a.poll_signal(LATE, cx).is_ready() => None,
            Poll::Pending => return Poll::Pending,
        };
        a.respond_by_ms.store(0, Relaxed);
        Poll::Ready(out)
    }
}

/// Shared by a connection's IO, its requests and the [`Watchdog`].
#[derive(Debug)]
pub struct Activity {
    phase: AtomicU8,
    since_ms: AtomicU64,
    in_flight: AtomicU32,
    /// When the request in flight must have its response head ([`now_ms`]; 0: no deadline).
    respond_by_ms: AtomicU64,
    /// Set by the watchdog: [`EXPIRED`] when the connection overstayed its phase, [`LATE`] when
    /// its request's server missed `respond_by_ms`, [`STOP`] at shutdown.
    signals: AtomicU8,
    /// The connection's task, woken when a signal is set.
    waker: AtomicWaker,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            phase: AtomicU8::new(READING),
            since_ms: AtomicU64::new(now_ms()),
            in_flight: AtomicU32::new(0),
            respond_by_ms: AtomicU64::new(0),
            signals: AtomicU8::new(0),
            waker: AtomicWaker::new(),
        })
    }

    /// Run `exchange` (one request's wait for its response head) under the response timeout
    /// `limit`, kept by the watchdog instead of a timer of its own; `None` if the server missed
    /// it. Only for a connection that has one request in flight at a time. The future is
    /// `exchange` and a reference: it adds nothing else to the request's future.
    pub fn respond_within<F: std::future::Future>(
        &self,
        limit: Duration,
        exchange: F,
    ) -> Within<'_, F> {
        if self.signals.load(Relaxed) & LATE != 0 {
            // The request before this one was late: this one starts afresh.
            self.signals.fetch_and(!LATE, Relaxed);
        }
        self.respond_by_ms
            .store(now_ms() + limit.as_millis() as u64, Relaxed);
        Within {
            exchange,
            activity: self,
        }
    }

    pub(crate) fn on_read(&self) {
        if self.phase.load(Relaxed) == IDLE {
            self.since_ms.store(now_ms(), Relaxed);
            self.phase.store(READING, Relaxed);
        }
    }

    /// A request head arrived; the returned guard marks it done when dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Relaxed);
        self.phase.store(BUSY, Relaxed);
        Busy(self.clone())
    }

    /// Nothing in flight and no request begun since (keep-alive idle).
    pub fn is_idle(&self) -> bool {
        self.phase.load(Relaxed) == IDLE
    }

    /// Is a request being read that has not begun yet: the connection is new, or bytes came
    /// after an idle spell?
    pub fn awaits_request(&self) -> bool {
        self.phase.load(Relaxed) == READING
    }

    /// Is the server shutting down?
    pub fn is_stopping(&self) -> bool {
        self.signals.load(Relaxed) & STOP != 0
    }

    /// Resolves when the connection overstayed its phase ([`Ending::Expired`]) or the server shuts
    /// down ([`Ending::Stopping`]; expiry wins if both are set): one future for both, so that a
    /// connection's task checks its signals once per wake-up.
    pub async fn ending(&self) -> Ending {
        let s = self.signalled(EXPIRED | STOP).await;
        if s & EXPIRED != 0 {
            Ending::Expired
        } else {
            Ending::Stopping
        }
    }

    /// The signals among `wanted` once any is set.
    async fn signalled(&self, wanted: u8) -> u8 {
        poll_fn(|cx| self.poll_signal(wanted, cx)).await
    }

    /// Ready with the signals among `wanted` once any is set.
    fn poll_signal(&self, wanted: u8, cx: &mut Context<'_>) -> Poll<u8> {
        let set = self.signals.load(Relaxed) & wanted;
        if set != 0 {
            return Poll::Ready(set);
        }
        // Every future of a connection is polled by its one task: one waker serves them all.
        self.waker.register(cx.waker());
        match self.signals.load(Relaxed) & wanted {
            0 => Poll::Pending,
            set => Poll::Ready(set),
        }
    }

    fn signal(&self, signal: u8) {
        self.signals.fetch_or(signal, Relaxed);
        self.waker.wake();
    }

    /// Has it overstayed its phase at `now` (milliseconds, [`now_ms`])? A busy connection never
    /// has: its requests have their own timeouts.
    fn overstayed(&self, now: u64, limits: &Limits) -> bool {
        let limit = match self.phase.load(Relaxed) {
            READING => limits.header_ms,
            IDLE => limits.idle_ms,
            _ => return false,
        };
        now.saturating_sub(self.since_ms.load(Relaxed)) >= limit
    }

    /// Has the server of its request in flight missed the response deadline at `now`?
    fn is_late(&self, now: u64) -> bool {
        let by = self.respond_by_ms.load(Relaxed);
        by != 0 && now >= by && self.signals.load(Relaxed) & LATE == 0
    }
}

/// Why a connection is to end (see [`Activity::ending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It overstayed its phase's limit: close it now.
    Expired,
    /// The server shuts down: close it once its request in flight (if any) is answered.
    Stopping,
}

/// [`Activity`] signals.
const EXPIRED: u8 = 1;
const STOP: u8 = 2;
const LATE: u8 = 4;

/// The phase limits, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_ms: u64,
    idle_ms: u64,
}

/// Closes the connections of one server that overstay (see the module documentation).
#[derive(Debug)]
pub struct Watchdog {
    watched: Mutex<Vec<Weak<Activity>>>,
    /// Shutdown began: every connection watched, and any watched from now on, is told.
    stopping: AtomicBool,
    limits: Limits,
    tick: Duration,
}

impl Watchdog {
    /// A watchdog for the request-header and idle timeouts `header` and `idle`, and the response
    /// timeout `respond` of requests run with [`Activity::respond_within`]. It sweeps every
    /// twentieth of the shortest (between 5 ms and 500 ms), so a limit is enforced at most that
    /// much late.
    pub fn new(header: Duration, idle: Duration, respond: Duration) -> Arc<Watchdog> {
        let ms = |d: Duration| d.as_millis().max(1) as u64;
        Arc::new(Watchdog {
            watched: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            limits: Limits {
                header_ms: ms(header),
                idle_ms: ms(idle),
            },
            tick: (header.min(idle).min(respond) / 20)
                .clamp(Duration::from_millis(5), Duration::from_millis(500)),
        })
    }

    /// Watch a new connection (until it is gone).
    pub fn watch(&self, a: &Arc<Activity>) {
        let mut watched = self.watched.lock().expect("watchdog poisoned");
        watched.push(Arc::downgrade(a));
        // Read under the lock that `stop` takes after setting it: a connection is either in the
        // list `stop` goes through, or sees the flag here.
        if self.stopping.load(Relaxed) {
            a.signal(STOP);
        }
    }

    /// Tell every connection that the server shuts down (they finish what they are doing).
    pub fn stop(&self) {
        self.stopping.store(true, Relaxed);
        let watched: Vec<Arc<Activity>> = self
            .watched
            .lock()
            .expect("watchdog poisoned")
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for a in watched {
            a.signal(STOP);
        }
    }

    /// Sweep until dropped (the server's task aborts it).
    pub async fn run(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.sweep(now_ms());
        }
    }

    /// Wake the connections that overstayed at `now` (and forget them, and the closed ones), and
    /// those whose request's server is late.
    fn sweep(&self, now: u64) {
        let mut woken = Vec::new();
        self.watched.lock().expect("watchdog poisoned").retain(|w| {
            let Some(a) = w.upgrade() else {
                return false;
            };
            if a.overstayed(now, &self.limits) {
                woken.push((a, EXPIRED));
                return false;
            }
            if a.is_late(now) {
                woken.push((a, LATE));
            }
            true
        });
        // Woken outside the lock: a waking task may run on another thread and accept at once.
        for (a, signal) in woken {
            a.signal(signal);
        }
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Relaxed) == 1 {
            self.0.since_ms.store(now_ms(), Relaxed);
            self.0.phase.store(IDLE, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_watchdog_wakes_only_connections_that_overstayed() {
        let dog = Watchdog::new(
            Duration::from_millis(100),
            Duration::from_millis(300),
            Duration::from_secs(60),
        );
        let (reading, idle, busy) = (Activity::new(), Activity::new(), Activity::new());
        for a in [&reading, &idle, &busy] {
            dog.watch(a);
        }
        drop(idle.begin()); // a request came and went: idle since now
        let _busy = busy.begin();
        let start = reading.since_ms.load(Relaxed);
        let expired = |a: &Activity| a.signals.load(Relaxed) & EXPIRED != 0;
        dog.sweep(start + 99);
        assert!(!expired(&reading));
        dog.sweep(start + 150);
        assert!(expired(&reading), "header timeout");
        assert!(!expired(&idle) && !expired(&busy));
        dog.sweep(start + 10_000);
        assert!(expired(&idle), "idle timeout");
        assert!(!expired(&busy), "a busy connection is never closed here");
        let closed = Activity::new();
        dog.watch(&closed);
        drop(closed);
        dog.sweep(start + 10_001);
        assert_eq!(
            dog.watched.lock().unwrap().len(),
            1,
            "only the busy one stays listed"
        );
        // The connection's task is woken.
        let woken = tokio::time::timeout(Duration::from_secs(5), reading.ending()).await;
        assert_eq!(woken.ok(), Some(Ending::Expired));
        assert!(!busy.is_stopping());
        dog.stop();
        assert!(
            busy.is_stopping(),
            "shutdown reaches the connections watched"
        );
        let told = tokio::time::timeout(Duration::from_secs(5), busy.ending()).await;
        assert_eq!(told.ok(), Some(Ending::Stopping));
        let both = tokio::time::timeout(Duration::from_secs(5), reading.ending()).await;
        assert_eq!(
            both.ok(),
            Some(Ending::Expired),
            "expiry wins over shutdown"
        );
        let late = Activity::new();
        dog.watch(&late);
        assert!(late.is_stopping(), "and those watched after it began");
    }

    #[tokio::test]
    async fn a_late_response_is_given_up_on_and_a_timely_one_kept() {
        let dog = Watchdog::new(
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_millis(100),
        );
        assert_eq!(dog.tick, Duration::from_millis(5));
        tokio::spawn(dog.clone().run());
        let a = Activity::new();
        dog.watch(&a);
        let _busy = a.begin();
        let timely = a
            .respond_within(Duration::from_millis(100), async { 7 })
            .await;
        assert_eq!(timely, Some(7));
        let started = std::time::Instant::now();
        let late = a
            .respond_within(Duration::from_millis(100), std::future::pending::<()>())
            .await;
        assert_eq!(late, None);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(90), "{took:?}");
        // The next request starts afresh.
        let again = a
            .respond_within(Duration::from_millis(100), async { 8 })
            .await;
        assert_eq!(again, Some(8));
        assert!(!a.is_stopping());
    }
}
