//! The store without etcd: one JSON file in the state directory, rewritten whole on every change
//! (written beside, flushed, renamed over: a crash mid-write leaves the previous file).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, Mutex};

use super::{Commit, Kind, Object, Op, Snapshot, StoreError};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "api-state.json";

#[derive(Serialize, Deserialize)]
struct FileState {
    revision: u64,
    objects: Vec<FileObject>,
}

#[derive(Serialize, Deserialize)]
struct FileObject {
    kind: String,
    name: String,
    mod_revision: u64,
    body: Value,
}

/// The state file and the state it holds.
pub struct LocalStore {
    path: PathBuf,
    /// Held while a change is written, so commits apply one at a time.
    writing: Mutex<()>,
    state: watch::Sender<Option<Arc<Snapshot>>>,
    health: watch::Sender<Option<String>>,
}

impl LocalStore {
    /// Open the state file in `dir` (created on the first change). A file that cannot be read is
    /// an error: starting empty would drop every route it holds.
    pub fn open(dir: &Path) -> Result<LocalStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let snapshot = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes).map_err(|message| StoreError::File {
                path: path.display().to_string(),
                message: format!("{message}; move it away to start without the API's changes"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => {
                return Err(StoreError::File {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        Ok(LocalStore {
            path,
            writing: Mutex::new(()),
            state: watch::Sender::new(Some(Arc::new(snapshot))),
            health: watch::Sender::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.state.subscribe()
    }

    pub fn health(&self) -> watch::Receiver<Option<String>> {
        self.health.subscribe()
    }

    pub async fn commit(&self, base: &Snapshot, ops: &[Op]) -> Result<Commit, StoreError> {
        let _one_at_a_time = self.writing.lock().await;
        let current = self.state.borrow().clone().unwrap_or_default();
        if current.revision != base.revision {
            return Ok(Commit::Conflict);
        }
        let revision = current.revision + 1;
        let mut objects = Op::apply_all(&current.objects, ops);
        for op in ops {
            let (kind, name) = op.target();
            if let Some(o) = objects.get_mut(&(kind, name.to_string())) {
                o.mod_revision = revision;
            }
        }
        let next = Snapshot {
            revision,
            marker: revision,
            objects,
            strays: Vec::new(),
            ..Default::default()
        };
        let bytes = render(&next);
        let path = self.path.clone();
        let failed = |message: String| StoreError::File {
            path: self.path.display().to_string(),
            message,
        };
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(format!("cannot write: {e}")))?;
        self.state.send_replace(Some(Arc::new(next)));
        Ok(Commit::Done(revision))
    }
}

fn parse(bytes: &[u8]) -> Result<Snapshot, String> {
    let state: FileState =
        serde_json::from_slice(bytes).map_err(|e| format!("not a state file: {e}"))?;
    let mut objects = BTreeMap::new();
    for o in state.objects {
        let kind = Kind::from_plural(&o.kind)
            .ok_or_else(|| format!("{:?}: expected routes, services or certificates", o.kind))?;
        objects.insert(
            (kind, o.name),
            Object {
                body: o.body,
                mod_revision: o.mod_revision,
            },
        );
    }
    Ok(Snapshot {
        revision: state.revision,
        marker: state.revision,
        objects,
        strays: Vec::new(),
        ..Default::default()
    })
}

fn render(s: &Snapshot) -> Vec<u8> {
    let state = FileState {
        revision: s.revision,
        objects: s
            .objects
            .iter()
            .map(|((kind, name), o)| FileObject {
                kind: kind.plural().into(),
                name: name.clone(),
                mod_revision: o.mod_revision,
                body: o.body.clone(),
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&state).expect("JSON values serialise")
}

/// Write beside (mode 0600), flush to disk, rename over, flush the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        // Readable by Tether's user only: it may hold certificates' private keys.
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tether-local-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn put(name: &str) -> Op {
        Op::Put {
            kind: Kind::Route,
            name: name.into(),
            body: json!({"rule": "Path(`/`)", "service": "s"}),
        }
    }

    #[tokio::test]
    async fn changes_survive_a_reopen_and_stale_bases_conflict() {
        let d = dir("reopen");
        let store = LocalStore::open(&d).unwrap();
        let base = store.subscribe().borrow().clone().unwrap();
        assert_eq!(
            store.commit(&base, &[put("a")]).await.unwrap(),
            Commit::Done(1)
        );
        // Checked against revision 0, which is gone.
        assert_eq!(
            store.commit(&base, &[put("b")]).await.unwrap(),
            Commit::Conflict
        );
        let now = store.subscribe().borrow().clone().unwrap();
        assert_eq!(
            store.commit(&now, &[put("b")]).await.unwrap(),
            Commit::Done(2)
        );
        drop(store);

        let again = LocalStore::open(&d).unwrap();
        let s = again.subscribe().borrow().clone().unwrap();
        assert_eq!(s.revision, 2);
        assert_eq!(s.get(Kind::Route, "a").unwrap().mod_revision, 1);
        assert_eq!(s.get(Kind::Route, "b").unwrap().mod_revision, 2);
        assert!(!d.join("api-state.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_state_file_stops_the_start_with_its_path() {
        let d = dir("corrupt");
        std::fs::write(d.join(FILE_NAME), b"{\"revision\": 3, \"obj").unwrap();
        let e = LocalStore::open(&d).err().unwrap().to_string();
        assert!(e.contains(FILE_NAME) && e.contains("move it away"), "{e}");
    }
}
