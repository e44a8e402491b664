//! What every configuration source is: a name, a run loop that reports the source's whole
//! desired state on every change, and a policy for its first report at start. The binary starts
//! a list of them and applies what they send; the control plane never knows which is which.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tether_model::ProviderUpdate;
use tokio::sync::{mpsc, oneshot};

/// What applying an update gave: the version of the table now served, or the errors that kept it
/// out (the previous table keeps serving).
pub type Applied = Result<String, Vec<String>>;

/// A message from a source to whoever applies its updates.
#[derive(Debug)]
pub enum Event {
    /// The source's whole desired state. `applied`, when given, hears the outcome (the API source
    /// answers a change only once it is served).
    Update {
        update: ProviderUpdate,
        applied: Option<oneshot::Sender<Applied>>,
    },
    /// The source's input could not be read at all (a file that does not parse): nothing is
    /// applied and the last good state of the source stays in force.
    Invalid(Vec<String>),
    /// The source cannot reach its input (`Some(problem)`) or can again (`None`). Its last state
    /// keeps serving meanwhile.
    Health(Option<String>),
}

/// How start-up treats a source's first report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstSync {
    /// Start fails unless the first report is a good update (the configuration file).
    Required,
    /// Wait up to this long for the first update, then serve without it while the source keeps
    /// trying (the Docker engine, etcd).
    Wait(Duration),
}

/// A boxed run loop.
pub type Run = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One configuration source.
pub trait Source: Send {
    /// The provider name its updates carry (`file`, `docker`, `api`, `etcd`).
    fn name(&self) -> &str;

    fn first_sync(&self) -> FirstSync;

    /// Follow the source until `tx` is closed, sending an [`Event::Update`] with its whole state
    /// first and on every change.
    fn run(self: Box<Self>, tx: mpsc::Sender<Event>) -> Run;
}

impl std::fmt::Debug for dyn Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// Send an update without waiting for its outcome. `false`: the receiver is gone.
pub async fn send(tx: &mpsc::Sender<Event>, update: ProviderUpdate) -> bool {
    tx.send(Event::Update {
        update,
        applied: None,
    })
    .await
    .is_ok()
}
